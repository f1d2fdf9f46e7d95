"""A ``strata ... heal.tokens=N`` run killed while healing, then run again: the rerun keeps ``heal-state/`` and its
heal resumes from the last checkpoint instead of starting over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from test_cli import TINY

from search.heal.faults import FAULT_ENV

HEAL = [
    "search=none",
    "heal.tokens=3072",
    "heal.seq_len=64",
    "heal.batch_tokens=1024",
    "heal.micro_batch=8",
    "heal.save_every=1",
    "heal.eval_every=0",
]  # fmt: skip  (3 steps, a checkpoint after each)


def strata(run_dir: Path, fault: str) -> subprocess.CompletedProcess:
    env = {**os.environ, FAULT_ENV: fault}
    command = [sys.executable, "-m", "search.app.cli", *TINY, *HEAL, f"hydra.run.dir={run_dir}"]
    return subprocess.run(command, env=env, capture_output=True, text=True, check=False)


def test_a_run_killed_while_healing_resumes_its_heal(tiny_reference_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    killed = strata(run_dir, "step:2")  # after step 2, before its checkpoint: step 1's is the latest
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert json.loads((run_dir / "heal-state" / "latest.json").read_text())["step"] == 1
    again = strata(run_dir, "step:1")  # armed at a step only a heal started over would run again
    assert again.returncode == 0, again.stderr[-2000:]
    heal = json.loads((run_dir / "metrics.json").read_text())["heal"]
    assert heal["steps"] == 3 and [c["step"] for c in heal["curve"]] == [1, 2, 3]
    assert (run_dir / "healed" / "model.safetensors").is_file() and not (run_dir / "heal-state").exists()
