"""The searched run end to end on the tiny reference model: resume after SIGKILL, one seed one
allocation, search errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.storages.journal._storage import JournalOperation
from optuna.trial import TrialState

SEARCH = ["model.reference=tiny", "data.seq_len=64", "data.calib_sequences=8", "data.eval_seq_len=64",
          "data.eval_sequences=4", "progress=false", "search=evo", "search.offspring=4",
          "search.stage_tokens=[128,256,512]", "search.survivors=[2,1,1]"]  # fmt: skip


def command(args: list[str], run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "search.app.cli", *SEARCH, *args, f"hydra.run.dir={run_dir}"]


def load_study(run_dir: Path, name: str = "strata") -> optuna.Study:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def finished(run_dir: Path) -> int:
    if not (run_dir / "study.journal").exists():
        return 0
    try:
        return len(load_study(run_dir).get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
    except (KeyError, ValueError):  # the study is not written yet
        return 0


def finished_records(journal: Path) -> int:
    """Trials the journal records as finished, read from its lines (a trial of the tiny model takes ~20 ms:
    loading the study to count them would let the search run far past the count it is killed at)."""
    if not journal.exists():
        return 0
    count = 0
    for line in journal.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a record being written
            continue
        done = (TrialState.COMPLETE.value, TrialState.PRUNED.value)
        count += record.get("op_code") == JournalOperation.SET_TRIAL_STATE_VALUES and record.get("state") in done
    return count


def kill_when(run_dir: Path, args: list[str], at_least: int) -> int:
    """Start the search and SIGKILL it once ``at_least`` trials are finished; returns how many were."""
    proc = subprocess.Popen(command(args, run_dir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while finished_records(run_dir / "study.journal") < at_least and proc.poll() is None:
        time.sleep(0.01)
    assert proc.poll() is None, "the search ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "metrics.json").exists()
    return finished(run_dir)


def tear_last_record(journal: Path) -> None:
    """What a kill in the middle of a journal write leaves: the last record cut in half, no newline."""
    data = journal.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    journal.write_bytes(data[: start + (len(data) - start) // 2])


def test_killed_search_resumes_to_the_uninterrupted_allocation(tiny_reference_dir: Path, tmp_path: Path) -> None:
    """Killed twice (the second time mid-write of the journal), the run finishes the requested trials with
    none lost and the allocation of a run never interrupted."""
    args = ["search.trials=40", "seed=1"]
    whole = subprocess.run(command(args, tmp_path / "whole"), capture_output=True, text=True, check=False)
    assert whole.returncode == 0, whole.stderr[-3000:]
    run_dir = tmp_path / "run"
    first = kill_when(run_dir, args, 6)
    assert 6 <= first < 40
    second = kill_when(run_dir, args, first + 8)
    tear_last_record(run_dir / "study.journal")
    again = subprocess.run(command(args, run_dir), capture_output=True, text=True, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "no complete record" in (run_dir / "cli.log").read_text() and list(run_dir.glob("study.journal.torn-*"))
    trials = load_study(run_dir).get_trials()
    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(done) == 40 and second < 40
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    requeued = {t.user_attrs.get("requeued_from") for t in trials}
    for failed in (t for t in trials if t.state == TrialState.FAIL and t.params):
        assert failed.number in requeued, f"trial {failed.number} was lost"
    for name in ("allocation.json",):
        assert (run_dir / name).read_text() == (tmp_path / "whole" / name).read_text()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    reference = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert metrics["search"]["trials"] == 40
    assert metrics["search"]["best_fitness"] == reference["search"]["best_fitness"]
    assert metrics["pruned"] == reference["pruned"]


def test_same_seed_gives_the_same_allocation(tiny_reference_dir: Path, tmp_path: Path) -> None:
    allocations = []
    for name in ("a", "b"):
        proc = subprocess.run(command(["search.trials=12", "seed=3"], tmp_path / name), capture_output=True,
                              text=True, check=False)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        allocations.append(json.loads((tmp_path / name / "allocation.json").read_text()))
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        assert set(metrics["baselines"]) == {"uniform", "flap_global"}
        assert metrics["search"]["best_fitness"] <= metrics["baselines"]["uniform"]["kl"]
    assert allocations[0] == allocations[1]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["supernet.radius=0"], "search space is empty"),
        (["budget.keep=0.00001"], "cannot be reached"),
        (["search.multi_objective=params"], "needs a multi-objective sampler"),
        (["search.iterations=0"], "search.iterations=0"),
        (["budget.kind=total_params", "budget.keep=0.1"], "no unit owns"),
    ],
)
def test_search_errors_exit_2(tiny_reference_dir: Path, tmp_path: Path, args: list[str], expected: str) -> None:
    proc = subprocess.run(command([*args, "search.trials=4"], tmp_path / "run"), capture_output=True, text=True,
                          check=False)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expected in errors[0]
    assert "Traceback" not in proc.stderr


def test_coarse_to_fine_refines_the_grid_and_never_loses_fitness(tiny_reference_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = ["search.trials=8", "search.iterations=3", "supernet.criterion=flap", "supernet.compensation=bias"]
    proc = subprocess.run(command(args, run_dir), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    iterations = metrics["search"]["iterations"]
    assert [it["study"] for it in iterations] == ["strata", "strata-it1", "strata-it2"]
    assert [it["strides"]["mlp"] for it in iterations] == [2, 1, 1]  # tiny: 128 channels, coarse level 16
    fitness = [it["best_fitness"] for it in iterations]
    assert fitness == sorted(fitness, reverse=True), "an iteration lost the best allocation so far"
    assert iterations[1]["compensated_levels"] > 0  # bias compensation of the new widths was built
    assert metrics["search"]["best_fitness"] == fitness[-1]
    budget = metrics["budget"]
    assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"]
    for it in iterations:  # each refined study starts from the previous best and finished its trials
        study = load_study(run_dir, it["study"])
        assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == it["trials"] == 8
        if it["iteration"]:
            assert study.trials[0].user_attrs["warm_start"] == "previous_best"
            assert study.trials[0].value == pytest.approx(iterations[it["iteration"] - 1]["best_fitness"])
    mlp = [layer["mlp_units"] for layer in json.loads((run_dir / "allocation.json").read_text())["layers"]]
    assert all(units % 8 == 0 for units in mlp)


def test_multi_objective_writes_a_pareto_front_and_materialises_on_budget(
    tiny_reference_dir: Path, tmp_path: Path
) -> None:
    run_dir = tmp_path / "run"
    args = ["search=nsga2", "search.multi_objective=params", "search.trials=16", "search.stage_tokens=[512]",
            "search.survivors=[1]", "supernet.radius=2"]  # fmt: skip
    proc = subprocess.run(command(args, run_dir), capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pareto = json.loads((run_dir / "pareto.json").read_text())
    front = pareto["front"]
    assert len(front) >= 2
    for a in front:  # no point of the front dominates another
        for b in front:
            assert not (a is not b and a["fitness"] <= b["fitness"] and a["kept"] <= b["kept"]
                        and (a["fitness"], a["kept"]) != (b["fitness"], b["kept"]))  # fmt: skip
    metrics = json.loads((run_dir / "metrics.json").read_text())
    chosen = pareto["chosen"]
    source = next(p for p in front if p["trial"] == chosen["from_trial"])
    assert source["feasible"] and source["params"] <= chosen["params"]
    budget = metrics["budget"]
    assert chosen["params"] == budget["cost"] and budget["target_cost"] - budget["slack"] < budget["cost"]
    assert metrics["search"]["best_fitness"] == chosen["fitness"]
    assert metrics["search"]["multi_objective"] == "params"
    study = load_study(run_dir)
    assert len(study.directions) == 2
