"""Ctrl-C (SIGINT) in a ``strata`` run: one line naming the stage it stopped in and how to resume, exit status 130,
no traceback and no outputs (a rerun resumes: the caches and the study are kept)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from test_cli import TINY

# strata with its run replaced by one that logs the dense model's line (calibration starts after it) and stalls
STALLED = """
import logging, sys, time
from pathlib import Path
import search.app.run

def stalled(cfg, out_dir):
    logging.getLogger("search.app.run").info("dense model: 1 parameters, held-out ppl 2.000")
    (Path(out_dir) / "stalled").touch()
    time.sleep(120)

search.app.run.run = stalled
from search.app.cli import main
sys.argv = ["strata", *sys.argv[1:]]
main()
"""


def interrupt_when(command: list[str], ready: Path, tmp_path: Path, wait_s: float = 120) -> tuple[int, str, str]:
    """Start ``command``, send SIGINT once ``ready`` exists, and return its status, stdout and stderr."""
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + wait_s
            while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert ready.exists(), f"never reached {ready.name}: {err.read_text()[-2000:]}"
            proc.send_signal(signal.SIGINT)
            status = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return status, out.read_text(), err.read_text()


def test_sigint_in_a_stage_is_one_line_naming_it_and_the_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    command = [sys.executable, "-c", STALLED, *TINY, f"hydra.run.dir={run_dir}"]
    status, _, stderr = interrupt_when(command, run_dir / "stalled", tmp_path)
    assert status == 130 and "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[-2000:]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("strata: interrupted during calibration"), stderr
    assert "(last logged: dense model: 1 parameters" in lines[0] and str(run_dir) in lines[0]
    assert lines[0].endswith("nothing is lost: run the same command again to resume")  # hydra.run.dir was given
    assert "interrupted during calibration" in (run_dir / "cli.log").read_text()


def test_sigint_in_a_real_search_leaves_no_outputs_and_says_how_to_resume(tiny_reference_dir: Path,
                                                                           tmp_path: Path) -> None:  # fmt: skip
    """The real pipeline, interrupted in its search (which would run 10,000 trials)."""
    run_dir = tmp_path / "run"
    command = [sys.executable, "-m", "search.app.cli", *TINY, "search.trials=10000", f"hydra.run.dir={run_dir}"]
    status, _, stderr = interrupt_when(command, run_dir / "study.journal", tmp_path)
    assert status == 130 and "Traceback" not in stderr, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("strata: ")]
    assert len(lines) == 1 and lines[0].startswith("strata: interrupted during search"), stderr[-3000:]
    assert "run the same command again to resume" in lines[0]
    assert not (run_dir / "metrics.json").exists() and (run_dir / "study.journal").is_file()
