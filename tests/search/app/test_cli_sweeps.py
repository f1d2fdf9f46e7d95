"""The checks ``strata`` makes before any job: every member of a sweep, the run and cache directories written to
for real, and a value the shell split at a space. Each ends with one ``error:`` line and exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import TINY

from search.app.cli import validate
from search.app.config import register_configs


def refused(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    """The one ``error:`` line ``strata ARGV``'s checks end with (in process: no job is run)."""
    register_configs()
    with pytest.raises(SystemExit) as stop:
        validate("strata", argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert stop.value.code == 2 and len(lines) == 1, err
    return lines[0]


def test_a_sweep_with_an_invalid_member_starts_no_job(tmp_path: Path) -> None:
    """budget.keep=0.3,2.0,0.5 ran 0.3, then failed on 2.0 and never ran 0.5: now no job starts."""
    sweep_dir = tmp_path / "sweep"
    argv = ["-m", *TINY, "budget.keep=0.3,2.0,0.5", f"hydra.sweep.dir={sweep_dir}"]
    proc = subprocess.run([sys.executable, "-m", "search.app.cli", *argv], capture_output=True, text=True, check=False,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "sweep member budget.keep=2.0 " in lines[0] and "no job was started" in lines[0]
    assert "outside (0, 1]" in lines[0] and "0.5" not in lines[0].split("(")[0]
    assert not sweep_dir.exists()


def test_every_invalid_member_of_every_sweep_is_named(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    line = refused(capsys, ["-m", *TINY, "seed=0,1", "budget.keep=0.5,2.0,-1", f"hydra.sweep.dir={tmp_path}/s"])
    assert line.startswith("error: sweep members budget.keep=2.0, budget.keep=-1 cannot run"), line


def test_members_that_fail_only_together_name_their_job(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    argv = ["-m", *TINY, "search.resample=true,false", "search.workers=1,2", f"hydra.sweep.dir={tmp_path}/s"]
    line = refused(capsys, argv)
    assert "sweep member search.resample=True search.workers=2 cannot run" in line and "search.workers=1" in line


def test_an_error_every_job_shares_reads_as_a_single_runs(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    line = refused(capsys, ["-m", *TINY, "colour=blue", "seed=0,1", f"hydra.sweep.dir={tmp_path}/s"])
    assert "colour" in line and "sweep" not in line


def test_a_valid_sweep_passes_its_checks(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    register_configs()
    validate("strata", ["-m", *TINY, "budget.keep=0.3,0.5", "search=evo,none", f"hydra.sweep.dir={tmp_path}/s"])
    assert "error" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "directory", "why"),
    [
        ("hydra.run.dir", "/proc/strata-test/run", "No such file or directory"),  # root passes os.access there
        ("hydra.run.dir", "/sys/strata-test/run", ""),  # PermissionError or a read-only file system
        ("hydra.sweep.dir", "/proc/strata-test/sweep", "No such file or directory"),
    ],
)
def test_an_unwritable_output_directory_is_one_line(capsys: pytest.CaptureFixture, key: str, directory: str,
                                                    why: str) -> None:  # fmt: skip
    multirun = ["-m"] if key == "hydra.sweep.dir" else []
    line = refused(capsys, [*multirun, *TINY, f"{key}={directory}"])
    assert f"{key}={directory} cannot be written" in line and "give a writable directory" in line and why in line


def test_an_unwritable_cache_directory_is_one_line(capsys: pytest.CaptureFixture, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("STRATA_CACHE_DIR", "/proc/strata-test")
    line = refused(capsys, [*TINY, f"hydra.run.dir={tmp_path}/run"])
    assert "STRATA_CACHE_DIR=/proc/strata-test cannot be written" in line
    assert "set STRATA_CACHE_DIR to a writable directory" in line


def test_a_value_the_shell_split_at_a_space_asks_for_quotes(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    """``strata model.path=/tmp/my model``: Hydra's parser error becomes the fix."""
    line = refused(capsys, [*TINY, "model.path=/tmp/my", "model", f"hydra.run.dir={tmp_path}/run"])
    assert "quote it" in line and "model.path='/tmp/my model'" in line, line
    line = refused(capsys, [*TINY, "model.path=/tmp/my", "(model)", f"hydra.run.dir={tmp_path}/run"])
    assert "model.path='/tmp/my (model)'" in line and "LexerNoViableAlt" not in line, line
