"""A run directory is finished only once metrics.json, written last, is there; a killed run's rerun finishes it;
strata deletes only what it wrote and refuses a directory holding anything else; one strata at a time per directory.

Kills are simulated by a runner that ends the process with ``os._exit(9)`` (as ``kill -9`` would: no cleanup)
at a chosen point of the run, named by ``STRATA_TEST_KILL_AT``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_cli import TINY

from search.app.outputs import LOCK, RECORD, WHOLE, prepare_run_dir, read_record, run_lock, temporaries
from supernet.errors import UsageError

FAST = [*TINY, "search=none"]  # no search: the quickest complete run

RUNNER = textwrap.dedent(
    """
    import os, runpy, sys

    def die(*args, **kwargs):
        os._exit(9)

    point = os.environ.get("STRATA_TEST_KILL_AT")
    if point == "gguf":  # inside export_gguf's atomic write, model/ saved: .model.gguf.XXXXXXXX is left
        import supernet.io.export.gguf as gguf

        gguf.add_tokenizer = die
    elif point == "report":  # after manifest.json, before report.html
        import search.app.report as report

        report.write_report = die
    runpy.run_module("search.app.cli", run_name="__main__", alter_sys=True)
    """
)


def strata(args: list[str], run_dir: Path, *, kill_at: str | None = None) -> subprocess.CompletedProcess:
    """``strata ARGS hydra.run.dir=RUN_DIR`` in a subprocess, killed at ``kill_at`` when given."""
    runner = run_dir.parent / "kill_runner.py"
    runner.write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if k != "STRATA_TEST_KILL_AT"}
    if kill_at is not None:
        env["STRATA_TEST_KILL_AT"] = kill_at
    return subprocess.run([sys.executable, str(runner), *args, f"hydra.run.dir={run_dir}"], capture_output=True,
                          text=True, check=False, env=env)  # fmt: skip


def one_error(proc: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a refused run (status 2, no traceback)."""
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory`` (the lock and Hydra's own files aside) and its bytes."""
    skip = (LOCK, "cli.log", "kill_runner.py")
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*"))
            if p.is_file() and p.name not in skip and ".hydra" not in p.parts}  # fmt: skip


@pytest.fixture(scope="module")
def finished(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    proc = strata(FAST, run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_a_run_killed_in_its_gguf_export_or_before_its_report_is_finished_by_a_rerun(
    tiny_reference_dir: Path, tmp_path: Path
) -> None:
    """Item 4 and 7: the kill in the export leaves model/ and the export's temporary, and no metrics.json; the
    rerun (killed again after manifest.json) is not finished either, and cleared the strata temporaries; the
    third run finishes with every output."""
    run_dir = tmp_path / "run"
    args = [*FAST, "export.gguf=true"]
    proc = strata(args, run_dir, kill_at="gguf")
    assert proc.returncode == 9, proc.stderr[-3000:]
    assert (run_dir / "model" / "config.json").is_file() and not (run_dir / "metrics.json").exists()
    assert [p.name.startswith(".model.gguf.") for p in temporaries(run_dir)] == [True]
    (run_dir / ".model.k1lled_0").mkdir()  # what a kill in save_pruned leaves
    (run_dir / ".model.k1lled_0" / "model.safetensors").write_bytes(b"half")

    proc = strata(args, run_dir, kill_at="report")
    assert proc.returncode == 9, proc.stderr[-3000:]
    assert (run_dir / "manifest.json").is_file() and (run_dir / "model.gguf").is_file()
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "report.html").exists()  # metrics.json last
    assert temporaries(run_dir) == []

    proc = strata(args, run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("metrics.json", "allocation.json", "model", "model.gguf", "report.html", "manifest.json"):
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["gguf"]["bytes"] == (run_dir / "model.gguf").stat().st_size
    assert temporaries(run_dir) == [] and not list(run_dir.glob(".model*"))
    assert set(read_record(run_dir)) >= {"metrics.json", "model", "model.gguf", "report.html", "manifest.json"}


def test_a_model_folder_of_the_users_own_is_refused_before_any_work(tiny_reference_dir: Path, tmp_path: Path) -> None:
    """Item 5: the directory's model/ is not strata's: one line, nothing touched (it used to fail after the work;
    overwrite=true, which used to delete it, is refused the same way: test_overwrite_deletes_only_what_strata_wrote)."""
    run_dir = tmp_path / "run"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "weights.bin").write_bytes(b"mine")
    error = one_error(strata(FAST, run_dir))
    assert "model/weights.bin" in error and "strata did not write" in error
    assert (run_dir / "model" / "weights.bin").read_bytes() == b"mine"
    assert not (run_dir / "metrics.json").exists() and not (run_dir / RECORD).exists()


def test_overwrite_deletes_only_what_strata_wrote(finished: Path, tmp_path: Path) -> None:
    """Item 5: a file of the user's inside strata's model/, or an artifacts/ strata never wrote, is refused with
    nothing deleted; once moved away, overwrite=true replaces the outputs and leaves the user's other files."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / "model" / "README.md").write_text("my notes on this model")
    (run_dir / "artifacts").mkdir()
    (run_dir / "artifacts" / "plot.png").write_bytes(b"png")
    (run_dir / "notes.txt").write_text("mine")
    before = snapshot(run_dir)
    error = one_error(strata([*FAST, "overwrite=true"], run_dir))
    assert "model/README.md" in error and "artifacts/plot.png" in error and "nothing was deleted" in error
    assert snapshot(run_dir) == before

    (run_dir / "model" / "README.md").unlink()
    shutil.rmtree(run_dir / "artifacts")
    proc = strata([*FAST, "overwrite=true", "budget.keep=0.7"], run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["budget"]["keep"] == 0.7
    assert (run_dir / "notes.txt").read_text() == "mine"


def test_a_second_strata_in_a_directory_in_use_is_refused(finished: Path, tmp_path: Path) -> None:
    """Item 6: while a process holds the run directory's lock, strata (plain or overwrite=true) refuses in one
    line naming that process, and writes or deletes nothing."""
    fresh, done = tmp_path / "fresh", tmp_path / "done"
    fresh.mkdir()
    shutil.copytree(finished, done)
    for run_dir, extra in ((fresh, []), (done, ["overwrite=true"])):
        before = snapshot(run_dir)
        with open(run_dir / LOCK, "w") as held:  # what a running strata holds
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held.write(f"{os.getpid()}\n")
            held.flush()
            error = one_error(strata([*FAST, *extra], run_dir))
        assert f"in use by process {os.getpid()}" in error and str(run_dir) in error
        assert snapshot(run_dir) == before


def test_a_killed_lock_holder_never_blocks_the_next_run(tmp_path: Path) -> None:
    code = ("import os, sys; from search.app.outputs import run_lock\n"
            "with run_lock(sys.argv[1]):\n    os._exit(9)\n")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 9 and (tmp_path / LOCK).read_text().strip().isdigit(), proc.stderr[-2000:]
    with run_lock(tmp_path):
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
        with pytest.raises(UsageError, match=f"in use by process {os.getpid()}"):
            with run_lock(tmp_path):
                pass


def _unfinished(run_dir: Path) -> None:
    """An unfinished run's directory: the study, a listed model/, a claimed allocation.json, temporaries."""
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "model" / "config.json").write_text("{}")
    (run_dir / "artifacts" / "a").mkdir(parents=True)
    (run_dir / "artifacts" / "a" / "x.json").write_text("{}")
    (run_dir / "study.journal").write_text("journal")
    (run_dir / ".allocation.json.ab12cd34").write_text("{")
    (run_dir / ".model.gguf.zz_99yy8").write_bytes(b"GGUF")
    (run_dir / "notes.txt").write_text("mine")
    (run_dir / ".hidden.ab12cd34").write_text("mine too")
    outputs = {"model": ["config.json"], "artifacts": WHOLE, "study.journal": WHOLE, "allocation.json": WHOLE}
    (run_dir / RECORD).write_text(json.dumps({"outputs": outputs}))


def test_a_rerun_keeps_the_study_of_an_unfinished_run_and_overwrite_does_not(tmp_path: Path) -> None:
    """The rerun of an unfinished directory resumes its study: it deletes the outputs strata wrote but the
    journal and artifacts; overwrite=true deletes those too; the user's files stay either way."""
    _unfinished(tmp_path)
    prepare_run_dir(tmp_path, overwrite=False)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == [".hidden.ab12cd34", RECORD, "artifacts", "notes.txt", "study.journal"]
    assert set(read_record(tmp_path)) == {"artifacts", "study.journal"}
    prepare_run_dir(tmp_path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden.ab12cd34", RECORD, "notes.txt"]
    assert read_record(tmp_path) == {}


def test_a_finished_run_is_refused_without_overwrite(tmp_path: Path) -> None:
    _unfinished(tmp_path)
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(UsageError, match="holds metrics.json, which strata did not write"):
        prepare_run_dir(tmp_path, overwrite=True)
    outputs = read_record(tmp_path)
    (tmp_path / RECORD).write_text(json.dumps({"outputs": {**outputs, "metrics.json": WHOLE}}))
    with pytest.raises(UsageError, match="holds a finished run"):
        prepare_run_dir(tmp_path, overwrite=False)
    assert (tmp_path / "model" / "config.json").is_file() and (tmp_path / ".model.gguf.zz_99yy8").is_file()
