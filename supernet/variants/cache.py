"""The supernet's compact on-disk cache: rankings and per-level compensation, nothing dense.

One entry per key (sha256 of the model's tensors, the calibration tokens and the supernet config with
its level grid) under ``<root>/<key>/``: one safetensors file per module holding

    ranking [units] int32 (a mixture's whole experts: [experts]; channels of every expert: [experts, width], each
        expert's own ranking), fluctuation [units] float64 (FLAP's scores; the expert criterion's for experts),
    mean [in] float32 (the output projection's mean input: FLAP's bias and the fine levels'; compensated
        modules only), bias.<level> [hidden] float32 (bias compensation), weight.<level> [hidden, kept cols] (refit)

and ``manifest.json`` with the key, the config and the sha256 of every file. Týr-the-Pruner stores
9 zero-filled copies of every o_proj and down_proj instead; here a variant is rebuilt from the live
dense weights plus these few tensors. Root: ``$STRATA_CACHE_DIR/supernet``, else
``platformdirs.user_cache_dir("strata")/supernet``. An entry whose files do not match the manifest
is logged, deleted and rebuilt, never used. Entries are written to a temporary directory and renamed.

The model's part of the key is :func:`supernet.io.identity.model_digest`: the full hash of its weights,
remembered per identity of the safetensors files it was loaded from (read in milliseconds), so a second run does
not read every weight byte again. The model's config (RoPE, norms' epsilon, activation: what changes the forward
without changing a tensor) is part of the key as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.io.files import atomic_path
from supernet.io.identity import tensor_digest

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 4  # 4: no criterion scores (only their ranking); 3: fluctuation in float64; 2: mean inputs


def entry_key(model_digest: str, tokens: torch.Tensor, config: dict) -> str:
    """sha256 of (model hash, calibration tokens hash, supernet config incl. the grid), 24 hex digits."""
    digest = hashlib.sha256()
    digest.update(model_digest.encode())
    digest.update(tensor_digest(tokens).hexdigest().encode())
    digest.update(json.dumps(config, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def file_sha(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def entry_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def save_entry(directory: Path, key: str, config: dict, modules: dict[str, dict[str, torch.Tensor]]) -> int:
    """Write an entry atomically; returns its size in bytes. modules: file stem -> tensors."""
    from safetensors.torch import save_file

    if directory.exists():  # a damaged entry of the same key: replaced whole
        shutil.rmtree(directory)
    with atomic_path(directory, directory=True) as tmp:
        files = {}
        for stem, tensors in modules.items():
            path = tmp / f"{stem}.safetensors"
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(path))
            files[path.name] = file_sha(path)
        manifest = {"version": FORMAT_VERSION, "key": key, "config": config, "files": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    size = entry_bytes(directory)
    log.info("saved supernet cache %s (%d bytes)", directory, size)
    return size


def _discard(directory: Path, why: str) -> None:
    log.warning("supernet cache %s is unusable (%s): rebuilding it", directory, why)
    shutil.rmtree(directory, ignore_errors=True)


def load_entry(directory: Path, key: str) -> dict[str, dict[str, torch.Tensor]] | None:
    """The entry's tensors per file stem, or None when absent; a corrupt or mismatched entry is deleted."""
    from safetensors.torch import load_file

    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        if directory.exists():
            _discard(directory, "no manifest")
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        _discard(directory, f"manifest is not JSON: {exc.msg}")
        return None
    if manifest.get("version") != FORMAT_VERSION or manifest.get("key") != key:
        _discard(directory, f"manifest key {manifest.get('key')!r} is not {key!r}")
        return None
    modules = {}
    for name, sha in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file() or file_sha(path) != sha:
            _discard(directory, f"{name} is missing or does not match its sha256")
            return None
        modules[name.removesuffix(".safetensors")] = load_file(str(path))
    return modules
