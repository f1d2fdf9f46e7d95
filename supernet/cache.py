"""The supernet's compact on-disk cache: rankings and per-level compensation, nothing dense.

One entry per key (sha256 of the model's tensors, the calibration tokens and the supernet config with
its level grid) under ``<root>/<key>/``: one safetensors file per module holding

    ranking [units] int32, fluctuation [units] float64,
    bias.<level> [hidden] float32 (bias compensation), weight.<level> [hidden, kept cols] (refit)

and ``manifest.json`` with the key, the config and the sha256 of every file. Týr-the-Pruner stores
9 zero-filled copies of every o_proj and down_proj instead; here a variant is rebuilt from the live
dense weights plus these few tensors. Root: ``$STRATA_CACHE_DIR/supernet``, else
``platformdirs.user_cache_dir("strata")/supernet``. An entry whose files do not match the manifest
is logged, deleted and rebuilt, never used. Entries are written to a temporary directory and renamed.

The model's hash reads every weight byte (16 GB at 8B in bf16, about a minute). A model loaded from a
directory is keyed by the identity of its safetensors files instead (:func:`model_digest`): names,
sizes, modification and change times, inodes and headers, read in milliseconds; the full hash is
computed once per identity and remembered under ``<root>/identities/``. The identity is taken before
the weights are read (:func:`weight_files`) and again at build time: files rewritten in between give
the full hash and no record. Rewriting a file changes its change time (which no user call can set
back), so the identity changes and the full hash is taken again. The model's config (RoPE, norms'
epsilon, activation: what changes the forward without changing a tensor) is part of the key as well.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.files import atomic_path, write_json

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

CACHE_ENV = "STRATA_CACHE_DIR"
MANIFEST = "manifest.json"
IDENTITIES = "identities"  # <root>/identities/<weight files identity>.json: {"model_hash": ...}
FORMAT_VERSION = 4  # 4: no criterion scores (only their ranking); 3: fluctuation in float64; 2: mean inputs


def default_root() -> Path:
    """``$STRATA_CACHE_DIR/supernet``, else the platform's user cache directory for strata."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "supernet"
    import platformdirs

    return Path(platformdirs.user_cache_dir("strata")) / "supernet"


def tensor_digest(tensor: torch.Tensor, digest: hashlib._Hash | None = None) -> hashlib._Hash:
    """Feed a tensor's dtype, shape and raw bytes into a sha256."""
    digest = digest or hashlib.sha256()
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest


def model_hash(model: nn.Module) -> str:
    """sha256 over every named tensor of the model's state (names, dtypes, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        tensor_digest(tensor, digest)
    return digest.hexdigest()


def weight_files_identity(directory: Path, dtype: torch.dtype) -> str:
    """sha256 of a model directory's safetensors files as the file system describes them, and of the dtype
    they were loaded in: per file its name, size, modification and change times (ns), device, inode and
    header (every tensor's name, dtype, shape and byte range). Reads the headers only, never the weights."""
    digest = hashlib.sha256(str(dtype).encode())
    for path in sorted(directory.glob("*.safetensors")):
        st = path.stat()
        digest.update(f"{path.name}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|{st.st_dev}|{st.st_ino}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(int.from_bytes(handle.read(8), "little")))  # u64 length, then JSON
    return digest.hexdigest()


@dataclass(frozen=True)
class WeightFiles:
    """A model directory's safetensors files as they were just before the model was loaded from them."""

    directory: Path
    dtype: torch.dtype  # the dtype the weights are loaded in
    identity: str  # weight_files_identity(directory, dtype) then


def weight_files(directory: Path | str, dtype: torch.dtype) -> WeightFiles | None:
    """Take the identity of ``directory``'s weight files before loading them (None: no safetensors file)."""
    directory = Path(directory)
    if not any(directory.glob("*.safetensors")):
        return None
    return WeightFiles(directory, dtype, weight_files_identity(directory, dtype))


def model_digest(model: nn.Module, weights: WeightFiles | None, root: Path) -> str:
    """:func:`model_hash` of the model, remembered per identity of the files it was loaded from, unchanged
    since (None: hash the tensors every time). Files changed since the load give the full hash, unrecorded."""
    if weights is None or next(model.parameters()).dtype != weights.dtype:
        return model_hash(model)
    if weight_files_identity(weights.directory, weights.dtype) != weights.identity:
        log.warning("the weight files in %s changed after the model was loaded: hashing the loaded weights",
                    weights.directory)  # fmt: skip
        return model_hash(model)
    record = root / IDENTITIES / f"{weights.identity[:32]}.json"
    try:
        return json.loads(record.read_text())["model_hash"]
    except (OSError, ValueError, KeyError):
        pass
    digest = model_hash(model)
    write_json(record, {"model_hash": digest, "directory": str(weights.directory)})
    return digest


def model_config(model: nn.Module) -> dict:
    """The model's config as JSON, without where it was loaded from and the library version."""
    config = json.loads(model.config.to_json_string(use_diff=False))
    for key in ("_name_or_path", "transformers_version"):
        config.pop(key, None)
    return config


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
