"""``strata-summary --csv PATH`` that cannot be written: the table is still printed, then one ``error:`` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from search.app.summary import COLUMNS, main


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """A two-job sweep directory (Hydra configs, one job finished)."""
    root = tmp_path / "sweep"
    for name, seed in (("seed=0", 0), ("seed=1", 1)):
        (root / name / ".hydra").mkdir(parents=True)
        (root / name / ".hydra" / "config.yaml").write_text(f"seed: {seed}\nbudget:\n  keep: 0.5\n")
    (root / "seed=0" / "metrics.json").write_text('{"budget": {"keep": 0.5}, "pruned": {"ppl": 9.5, "params": 7}}')
    return root


@pytest.mark.parametrize("target", ["directory", "file_as_folder", "missing_folder"])
def test_an_unwritable_csv_prints_the_table_then_one_error(sweep: Path, target: str, capsys) -> None:
    blocker = sweep.parent / "blocker.txt"
    blocker.write_text("the user's file\n")
    csv_path = {
        "directory": sweep.parent,  # an existing directory
        "file_as_folder": blocker / "summary.csv",  # a file where a folder should be
        "missing_folder": sweep.parent / "nowhere" / "summary.csv",
    }[target]
    with pytest.raises(SystemExit) as exit_:
        main([str(sweep), "--csv", str(csv_path)])
    captured = capsys.readouterr()
    assert exit_.value.code == 2
    lines = captured.out.splitlines()
    assert lines[0].split() == list(COLUMNS) and len(lines) == 4  # header, rule, two jobs
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(csv_path) in errors[0] and "Traceback" not in captured.err, captured.err
    assert blocker.read_text() == "the user's file\n"
    assert not (sweep.parent / "nowhere").exists()


def test_a_writable_csv_still_ends_with_the_summary_line(sweep: Path, tmp_path: Path, capsys) -> None:
    main([str(sweep), "--csv", str(tmp_path / "out.csv")])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == list(COLUMNS)
    assert out[-1] == f"strata-summary: 2 jobs, CSV in {tmp_path / 'out.csv'}"
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == ",".join(COLUMNS)
