"""strata-heal killed with SIGKILL at several points (between the files of a checkpoint, between a checkpoint's
folder and the pointer to it), then the same command again: the healed weights are bitwise those of an
uninterrupted run. And the same heal on 2 CPU processes (torchrun, FSDP2 over gloo) ends at the 1-process loss."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from heal_runs import HEAL_ARGS
from safetensors.torch import load_file

from search.app.heal import main
from search.heal.faults import FAULT_ENV

DISTRIBUTED_RTOL = 1e-5  # 2 processes sum the same gradients in another order: float32 rounding only


def strata_heal(run_dir: Path, fault: str | None = None, *, launcher: tuple = ()) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV} | ({FAULT_ENV: fault} if fault else {})
    command = [*launcher, "-m", "search.app.heal", str(run_dir), *HEAL_ARGS, "--quiet"]
    return subprocess.run([sys.executable, *command] if not launcher else command, env=env, capture_output=True,
                          text=True, check=False)  # fmt: skip


def heal_entry(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())["heal"]


def test_kill_9_anywhere_then_the_same_command_ends_with_the_uninterrupted_weights(strata_healed: tuple[Path, str],
                                                                                   healed_run: Path,
                                                                                   tmp_path: Path) -> None:  # fmt: skip
    uninterrupted = strata_healed[0]
    run_dir = tmp_path / "run"
    shutil.copytree(healed_run, run_dir)
    state = run_dir / "heal-state"
    killed = strata_heal(run_dir, "checkpoint:model:2")  # after step 2, between the files of the first checkpoint
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (state / "latest.json").exists() and list(state.glob(".step-00000002.*"))
    killed = strata_heal(run_dir, "checkpoint:pointer:4")  # from the start; 2 done, 4 in place, latest names 2
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert json.loads((state / "latest.json").read_text())["step"] == 2 and (state / "step-00000004").is_dir()
    assert heal_entry(run_dir)["tokens"] == 2048  # metrics.json is still the run's own until the heal ends
    main([str(run_dir), *HEAL_ARGS, "--quiet"])  # the same command again: resumes at step 2
    healed, reference = (load_file(str(d / "healed" / "model.safetensors")) for d in (run_dir, uninterrupted))
    assert healed.keys() == reference.keys() and all((healed[k] == reference[k]).all() for k in healed)
    assert heal_entry(run_dir)["curve"] == heal_entry(uninterrupted)["curve"]
    assert not state.exists()


def test_two_processes_end_at_the_one_process_loss(strata_healed: tuple[Path, str], healed_run: Path,
                                                   tmp_path: Path) -> None:  # fmt: skip
    uninterrupted = strata_healed[0]
    run_dir = tmp_path / "run"
    shutil.copytree(healed_run, run_dir)
    torchrun = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2")
    proc = strata_heal(run_dir, launcher=torchrun)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two, one = heal_entry(run_dir), heal_entry(uninterrupted)
    assert [c["loss"] for c in two["curve"]] == pytest.approx([c["loss"] for c in one["curve"]], rel=DISTRIBUTED_RTOL)
    assert two["ppl_after"] == pytest.approx(one["ppl_after"], rel=DISTRIBUTED_RTOL)
