"""Sweeps: a two-job ``strata -m`` multirun on the tiny model, and ``strata-summary`` over its jobs."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from search.app.summary import COLUMNS, main

FAST = ["model.reference=tiny", "data.seq_len=64", "data.calib_sequences=4", "data.eval_seq_len=64",
        "data.eval_sequences=4", "progress=false", "search=evo", "search.trials=4", "search.offspring=2",
        "search.stage_tokens=[128,256]", "search.survivors=[1,1]"]  # fmt: skip


def summary(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "search.app.summary", *args], capture_output=True, text=True,
                          check=False)  # fmt: skip


def test_two_job_multirun_gives_a_two_row_summary(tiny_reference_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "search.app.cli", "-m", "budget.keep=0.3,0.5", "seed=0", *FAST,
         f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = sorted(p.parent.name for p in sweep.glob("*/metrics.json"))
    assert len(jobs) == 2
    assert jobs[0].startswith("budget.keep=0.3,") and jobs[1].startswith("budget.keep=0.5,")
    assert all(job.endswith(",seed=0") for job in jobs)  # Hydra's override_dirname: sorted key=value pairs

    out = summary([str(sweep)])
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines()[0].split() == list(COLUMNS)
    with (sweep / "summary.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["keep"], r["seed"], r["trials"], r["status"]) for r in rows] == [
        ("0.3", "0", "4", "done"),
        ("0.5", "0", "4", "done"),
    ]
    for row in rows:
        assert float(row["ppl"]) > 1 and float(row["uniform_ppl"]) > 1 and float(row["seconds"]) > 0
    assert int(rows[0]["params"]) < int(rows[1]["params"])


def test_a_job_without_metrics_is_listed_incomplete(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for name, seed in (("seed=0", 0), ("seed=1", 1)):
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nbudget:\n  keep: 0.5\n")
    (tmp_path / "seed=0" / "metrics.json").write_text('{"budget": {"keep": 0.5}, "pruned": {"ppl": 9.5, "params": 7}}')
    main([str(tmp_path), "--csv", str(tmp_path / "out.csv")])
    with (tmp_path / "out.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["job"], r["status"], r["ppl"], r["trials"]) for r in rows] == [
        ("seed=0", "done", "9.5", ""),
        ("seed=1", "incomplete", "", ""),
    ]
    assert "2 jobs" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "empty", "bad_flag"])
def test_bad_sweep_dir_is_a_one_line_error(case: str, tmp_path: Path) -> None:
    args = {"missing": [str(tmp_path / "nope")], "empty": [str(tmp_path)], "bad_flag": [str(tmp_path), "--colour"]}
    proc = summary(args[case])
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr
