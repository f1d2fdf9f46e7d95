"""TrialArtifacts: each complete trial's allocation (and a plot per new best) in the run's artifact store."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from search.app.artifacts import TrialArtifacts, allocation_svg, artifact_store
from search.driver import Search, SearchConfig, enqueue_warm_starts, make_sampler

optuna.logging.set_verbosity(optuna.logging.WARNING)


def journal_study(run_dir: Path, sampler=None) -> tuple[optuna.Study, optuna.storages.BaseStorage]:
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    return optuna.create_study(study_name="strata", storage=storage, sampler=sampler), storage


def read_artifact(run_dir: Path, artifact_id: str, tmp: Path) -> str:
    out = tmp / f"download-{artifact_id}"
    download_artifact(artifact_store=artifact_store(run_dir), artifact_id=artifact_id, file_path=str(out))
    return out.read_text()


def test_running_trial_gets_its_allocation_and_a_best_plot(grid, tmp_path: Path) -> None:
    study, storage = journal_study(tmp_path)
    hook = TrialArtifacts(tmp_path, grid)
    trial = study.ask()
    hook(study, trial, list(grid.target), 1.5)  # before study.tell: the files attach to the trial
    study.tell(trial, 1.5)

    metas = {m.filename: m for m in get_all_artifact_meta(study.trials[0], storage=storage)}
    assert set(metas) == {"allocation-0.json", "best-0.svg"}
    assert metas["best-0.svg"].mimetype == "image/svg+xml"
    record = json.loads(read_artifact(tmp_path, metas["allocation-0.json"].artifact_id, tmp_path))
    assert record["levels"] == list(grid.target)
    assert record["layers"] == grid.allocation(grid.target).to_json()["layers"]
    assert record["value"] == 1.5 and record["kept_params"] == grid.params(grid.target)
    assert (tmp_path / "artifacts" / metas["allocation-0.json"].artifact_id).is_file()


def test_search_hook_leaves_one_allocation_per_complete_trial(grid, optimum, evaluator_class, tmp_path: Path) -> None:
    cfg = SearchConfig(sampler="evo", trials=24, offspring=4, stage_tokens=[64, 128, 256], survivors=[2, 1, 1])
    study, storage = journal_study(tmp_path, sampler=make_sampler(cfg, grid, 0))
    enqueue_warm_starts(study, grid, {"uniform": list(grid.target)})
    Search(cfg, study, grid, evaluator_class(grid, optimum), progress=False,
           on_complete=[TrialArtifacts(tmp_path, grid)]).run()  # fmt: skip

    assert get_all_artifact_meta(study) == []  # the driver runs hooks before tell: files go to the trials
    best = float("inf")
    for trial in study.get_trials(deepcopy=False):
        names = {m.filename for m in get_all_artifact_meta(trial, storage=storage)}
        expected = set()
        if trial.state == TrialState.COMPLETE:
            expected.add(f"allocation-{trial.number}.json")
            if trial.value < best:
                best = trial.value
                expected.add(f"best-{trial.number}.svg")
        assert names == expected, trial.number


def test_a_finished_trial_attaches_its_files_to_the_study(grid, tmp_path: Path) -> None:
    study, storage = journal_study(tmp_path)
    trial = study.ask()
    study.tell(trial, 2.0)  # Optuna takes no more trial attributes: the study holds the files
    TrialArtifacts(tmp_path, grid, plot_best=False)(study, trial, list(grid.target), 2.0)
    assert [m.filename for m in get_all_artifact_meta(study)] == ["allocation-0.json"]
    assert get_all_artifact_meta(study.trials[0], storage=storage) == []


def test_a_second_hook_on_a_resumed_study_plots_only_real_improvements(grid, tmp_path: Path) -> None:
    study, storage = journal_study(tmp_path)
    for value in (3.0, 2.0):
        trial = study.ask()
        study.tell(trial, value)
    hook = TrialArtifacts(tmp_path, grid)  # a restarted driver: its best comes from the study
    worse, better = study.ask(), study.ask()
    hook(study, worse, list(grid.target), 2.5)
    hook(study, better, list(grid.target), 1.0)
    names = {m.filename for t in (worse, better) for m in get_all_artifact_meta(t, storage=storage)}
    assert names == {f"allocation-{worse.number}.json", f"allocation-{better.number}.json", f"best-{better.number}.svg"}


def test_allocation_svg_draws_one_bar_per_module() -> None:
    layers = [{"attn_units": 2, "attn_units_total": 4, "mlp_units": 0, "mlp_units_total": 64}] * 3
    svg = allocation_svg({"layers": layers}, title="t")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert svg.count("<rect") == 6 and "layer 2 mlp: 0/64" in svg
