"""launch/ray: the cluster config is valid for Ray's launcher, and submit.sh submits a valid strata command."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RAY_DIR = ROOT / "launch" / "ray"


def test_cluster_config_passes_rays_schema() -> None:
    ray = pytest.importorskip("ray", reason="needs ray (the dev extra)")
    jsonschema = pytest.importorskip("jsonschema")
    config = yaml.safe_load((RAY_DIR / "cluster.yaml").read_text())
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    jsonschema.validate(config, schema)
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"GPU": 0}  # the head's GPU is the driver's
    assert any("--num-gpus=0" in line for line in config["head_start_ray_commands"])
    assert config["file_mounts"] == {"/home/ray/strata": "."}
    assert any("pip install" in line and "/home/ray/strata[ray" in line for line in config["setup_commands"])


def test_submit_script_submits_strata_overrides_that_compose(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ray").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')  # prints what it was given
    (fake / "ray").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "STRATA_RUN_DIR": "/runs/r1"}
    proc = subprocess.run(["bash", str(RAY_DIR / "submit.sh"), "budget.keep=0.3"], capture_output=True, text=True,
                          env=env, check=False, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    args = proc.stdout.splitlines()
    assert args[:2] == ["job", "submit"] and args[args.index("--working-dir") + 1] == "."
    command = args[args.index("--") + 1 :]
    assert command[0] == "strata" and command[-1] == "budget.keep=0.3"
    overrides = command[1:]
    assert {"search.workers=8", "ray.address=auto", "hydra.run.dir=/runs/r1"} <= set(overrides)

    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    from search.app.config import register_configs

    register_configs()
    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose(config_name="strata", overrides=[o for o in overrides if not o.startswith("hydra.")])
    typed = OmegaConf.to_object(cfg)  # every key exists and every value is valid
    assert typed.search.workers == 8 and typed.ray.address == "auto" and typed.budget.keep == 0.3
