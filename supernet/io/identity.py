"""Who a model is, cheaply: the identity of the safetensors files it was loaded from, and the full hash of its
weights remembered per identity (the supernet cache's key, :mod:`supernet.variants.cache`)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.io.files import write_json

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn
log = logging.getLogger(__name__)

IDENTITIES = "identities"  # <root>/identities/<weight files identity>.json: {"model_hash": ...}


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


def model_digest(
    model: nn.Module, weights: WeightFiles | None, root: Path, *, hash_model: Callable[[], str] | None = None
) -> str:
    """:func:`model_hash` of the model, remembered per identity of the files it was loaded from, unchanged
    since (None: hash the tensors every time). Files changed since the load give the full hash, unrecorded.
    ``hash_model``: computes that hash where the model's tensors are not in memory (a streamed model's files,
    :meth:`supernet.io.streaming.LayerStream.model_hash`); None: ``model_hash(model)``."""
    hash_model = hash_model or (lambda: model_hash(model))
    if weights is None or next(model.parameters()).dtype != weights.dtype:
        return hash_model()
    if weight_files_identity(weights.directory, weights.dtype) != weights.identity:
        log.warning("the weight files in %s changed after the model was loaded: hashing the loaded weights",
                    weights.directory)  # fmt: skip
        return hash_model()
    record = root / IDENTITIES / f"{weights.identity[:32]}.json"
    try:
        return json.loads(record.read_text())["model_hash"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hash_model()
    write_json(record, {"model_hash": digest, "directory": str(weights.directory)})
    return digest


def model_config(model: nn.Module) -> dict:
    """The model's config as JSON, without where it was loaded from and the library version."""
    config = json.loads(model.config.to_json_string(use_diff=False))
    for key in ("_name_or_path", "transformers_version"):
        config.pop(key, None)
    return config
