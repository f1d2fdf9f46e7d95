"""SLURM presets (conf/hydra/launcher/): they compose, and submitit's local launcher runs the job they define."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="needs hydra-submitit-launcher (the dev extra)")

JOB_KEYS = ("timeout_min", "nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task", "mem_gb")
TINY = ["model.reference=tiny", "data.seq_len=64", "data.calib_sequences=4", "data.eval_seq_len=64",
        "data.eval_sequences=4", "progress=false", "search=none"]  # fmt: skip


def launcher(preset: str) -> dict:
    """``hydra.launcher`` of the strata config composed with ``hydra/launcher=<preset>``."""
    from hydra import compose, initialize_config_module

    from search.app.config import register_configs

    register_configs()
    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose(config_name="strata", overrides=[f"hydra/launcher={preset}"], return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher, resolve=False)


def test_slurm_presets_compose_one_driver_per_job() -> None:
    slurm, gpu8, local = launcher("slurm"), launcher("slurm_gpu8"), launcher("slurm_local")
    assert slurm["_target_"].endswith("SlurmLauncher") and gpu8["_target_"].endswith("SlurmLauncher")
    assert local["_target_"].endswith("LocalLauncher")
    assert slurm["tasks_per_node"] == gpu8["tasks_per_node"] == 1 and slurm["nodes"] == 1  # one driver per job
    assert slurm["gpus_per_node"] == 1 and gpu8["gpus_per_node"] == 8
    assert gpu8["partition"] == slurm["partition"]  # slurm_gpu8 inherits the rest of slurm
    assert {k: local[k] for k in JOB_KEYS} == {k: slurm[k] for k in JOB_KEYS}


def test_submitit_local_launcher_runs_the_slurm_presets_job(tiny_reference_dir: Path, tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "search.app.cli", "-m", "hydra/launcher=slurm_local", "budget.keep=0.5", *TINY,
         f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, check=False, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (job,) = [p.parent for p in sweep.glob("*/metrics.json")]
    assert job.name.startswith("budget.keep=0.5,")
    assert (job / "report.html").is_file() and (job / "manifest.json").is_file()
    ran = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.launcher
    assert {k: ran[k] for k in JOB_KEYS} == {k: launcher("slurm")[k] for k in JOB_KEYS}
    logs = list(sweep.glob(".submitit/*/*_0_log.out"))
    assert logs and f"strata: outputs in {job}" in logs[0].read_text()  # the job ran in submitit's process
