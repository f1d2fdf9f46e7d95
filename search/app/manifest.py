"""manifest.json: what it takes to reproduce a run, and the same entries as the study's user attributes.

Entries: ``git`` (revision and dirty flag of the strata checkout), ``packages`` (versions of Python and
of the libraries that change numbers), ``config_hash`` (sha256 of the resolved config as sorted JSON;
the config itself is ``.hydra/config.yaml``), ``data`` (source and paths, sha256 of the calibration and
held-out token windows actually used, and the sha1 of the built-in corpus when the run uses it:
``supernet.io.reference.corpus.corpus_hash``), ``seed``, ``device`` (torch device, GPU name, host),
``started`` and ``ended`` (ISO 8601, UTC) and ``seconds``.
"""

from __future__ import annotations

import dataclasses
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from supernet.io.files import json_hash, write_json

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from search.app.config import RunConfig

MANIFEST = "manifest.json"
PACKAGES = ("strata", "torch", "transformers", "tokenizers", "safetensors", "numpy", "scipy", "optuna",
            "hydra-core", "ray", "optuna-dashboard", "hydra-submitit-launcher", "plotly")  # fmt: skip


def git_state() -> dict:
    """The strata checkout's commit and whether it has uncommitted changes (None outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"revision": None, "dirty": None}
    return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Python's version and each installed distribution's (None when not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def plain_config(cfg: RunConfig) -> dict:
    """The resolved config as JSON-able dicts."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)


def config_hash(cfg: RunConfig) -> str:
    """sha256 of the resolved config serialised as JSON with sorted keys."""
    return json_hash(plain_config(cfg))


def tokens_hash(tokens: torch.Tensor | None) -> str | None:
    """sha256 of a token tensor's dtype, shape and bytes (``supernet.variants.cache.tensor_digest``)."""
    if tokens is None:
        return None
    from supernet.io.identity import tensor_digest

    return tensor_digest(tokens).hexdigest()


def data_entry(cfg: RunConfig, *, calib: torch.Tensor | None, held_out: torch.Tensor | None) -> dict:
    """Where the text came from and hashes of the windows used; the built-in corpus's hash when used."""
    uses_corpus = cfg.data.source == "builtin" or cfg.model.path is None  # reference models train on it
    corpus = None
    if uses_corpus:
        from supernet.io.reference.corpus import corpus_hash

        corpus = corpus_hash()
    return {
        "source": cfg.data.source,
        "path": cfg.data.path,
        "eval_path": cfg.data.eval_path,
        "calib_tokens_sha256": tokens_hash(calib),
        "eval_tokens_sha256": tokens_hash(held_out),
        "corpus_sha1": corpus,
    }


def device_entry(device: str) -> dict:
    """The torch device, the GPU's name when it is CUDA, and the host."""
    import torch

    gpu = None
    if device.startswith("cuda") and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(torch.device(device))
    return {"torch": device, "gpu": gpu, "host": platform.node(), "platform": sys.platform}


def iso(seconds: float) -> str:
    """A ``time.time()`` value as ISO 8601 in UTC."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat(timespec="seconds")


def build_manifest(
    cfg: RunConfig, *, started: float, calib: torch.Tensor | None = None, held_out: torch.Tensor | None = None
) -> dict:
    """manifest.json's entries known when the run starts (``started`` a ``time.time()`` value): built once
    per run, set as the studies' user attributes when they open; :func:`finish_manifest` adds the end."""
    return {
        "git": git_state(),
        "packages": package_versions(),
        "config_hash": config_hash(cfg),
        "data": data_entry(cfg, calib=calib, held_out=held_out),
        "seed": cfg.seed,
        "device": device_entry(cfg.device),
        "started": iso(started),
    }


def finish_manifest(manifest: dict, *, started: float, ended: float | None = None) -> dict:
    """The complete manifest: ``ended`` (ISO 8601; ``None``: now) and the run's ``seconds`` added."""
    ended = time.time() if ended is None else ended
    return {**manifest, "ended": iso(ended), "seconds": round(ended - started, 2)}


def record_in_studies(run_dir: Path, manifest: dict, studies: Sequence[str], *, storage_url: str | None) -> None:
    """Set the manifest's entries as user attributes of each of the run's ``studies`` (if it has a storage)."""
    import optuna

    from search.app.rundir import open_storage

    storage = open_storage(run_dir, storage_url)
    if storage is None:
        return
    known = set(optuna.get_all_study_names(storage))
    for name in (n for n in studies if n in known):
        study = optuna.load_study(study_name=name, storage=storage)
        for key, value in manifest.items():
            study.set_user_attr(key, value)


def write_manifest(
    run_dir: Path, manifest: dict, *, storage_url: str | None = None, studies: Sequence[str] | None = None
) -> Path:
    """Write ``run_dir/manifest.json`` and copy its entries into the studies the run searched (``studies``, else
    those its metrics.json names: the run writes the manifest before metrics.json)."""
    from search.app.rundir import run_studies

    path = Path(run_dir) / MANIFEST
    write_json(path, manifest)
    studies = run_studies(run_dir) if studies is None else studies
    record_in_studies(run_dir, manifest, studies, storage_url=storage_url)
    return path
