"""Token windows: texts tokenized once (the stream cached by the tokenizer's and the texts' hash), joined
with eos and cut into seeded windows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


def pack_tokens(
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    *,
    seq_len: int,
    num_sequences: int | None,
    seed: int,
    name: str = "data.seq_len",
) -> torch.LongTensor:
    """Tokenize, join documents with eos, cut into non-overlapping windows, keep a seeded random subset.

    ``name``: the config key of ``seq_len``, for the error when the texts are shorter than one window.

    Returns:
        tokens: [num_sequences, seq_len] (all windows when ``num_sequences`` is None).
    """
    assert seq_len > 0, f"seq_len must be positive, got {seq_len}"
    stream = token_stream(tokenizer, texts)
    num_windows = len(stream) // seq_len
    if num_windows == 0:
        raise UsageError(
            f"the texts give {len(stream)} tokens, under one window of {seq_len}: add text or lower {name}"
        )
    windows = stream[: num_windows * seq_len].long().view(num_windows, seq_len)
    order = torch.randperm(num_windows, generator=torch.Generator().manual_seed(seed))
    if num_sequences is not None and num_sequences > num_windows:
        logger.warning("asked for %d windows of %d tokens, the texts give only %d", num_sequences, seq_len, num_windows)
    return windows[order[:num_sequences]]


def token_stream(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> torch.Tensor:
    """The texts tokenized and joined with eos: [tokens] int32.

    Tokenizing the built-in corpus (10 MB) takes seconds and every run packs it, so the stream of a fast
    tokenizer is cached as safetensors under ``<cache root>/tokens/<sha256 of tokenizer and texts>``
    (the supernet cache's root, ``$STRATA_CACHE_DIR``); a cached stream is the same tensor, so which
    windows a seed picks never depends on the cache. The file's metadata holds the whole key, checked on
    read: a file that holds another key's stream (or none) is logged and rebuilt, never used."""
    key = _stream_key(tokenizer, texts)
    path = None if key is None else _tokens_root() / f"{key[:32]}.safetensors"
    if path is not None and path.is_file():
        cached = _load_cached(path, key)
        if cached is not None:
            return cached
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    separator = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    if not separator:
        logger.warning("the tokenizer has no eos token: documents are joined without a separator")
    tokens = [token for ids in encoded for token in (*ids, *separator)][: -len(separator) or None]
    stream = torch.tensor(tokens, dtype=torch.int32)
    if path is not None:
        _save_atomic(stream, path, key)
    return stream


def _load_cached(path: Path, key: str) -> torch.Tensor | None:
    """The stream cached at ``path`` when its metadata names ``key``; None (logged, to be rebuilt) when the file
    is unreadable or holds another stream (a file copied or renamed from another key, or written before keys
    were stored)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            stored = (handle.metadata() or {}).get("key")
            stream = handle.get_tensor("stream") if stored == key else None
    except Exception as error:  # a truncated or foreign file: tokenize again and overwrite it
        logger.warning("token cache %s is unreadable (%s): rebuilding it", path, error)
        return None
    if stream is None:
        logger.warning("token cache %s holds the stream of key %s, not %s: rebuilding it", path, stored, key)
    return stream


def _stream_key(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> str | None:
    """sha256 (hex) of the fast tokenizer's full definition, its eos id and the texts; None when not a fast one.

    The cache file is named by its first 32 digits; the whole digest is stored in the file's metadata and checked
    when it is read."""
    import hashlib

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    digest = hashlib.sha256(backend.to_str().encode())
    digest.update(str(tokenizer.eos_token_id).encode())
    for text in texts:
        digest.update(len(text).to_bytes(8, "little"))
        digest.update(text.encode())
    return digest.hexdigest()


def _tokens_root() -> Path:
    from supernet.io.files import default_root

    return default_root().parent / "tokens"


def _save_atomic(stream: torch.Tensor, path: Path, key: str) -> None:
    """Write the stream to ``path`` atomically, with ``key`` in its safetensors metadata."""
    from safetensors.torch import save_file

    from supernet.io.files import atomic_path

    try:
        with atomic_path(path) as tmp:
            save_file({"stream": stream}, str(tmp), metadata={"key": key})
    except OSError as error:  # a read-only cache only costs the speed-up
        logger.warning("could not cache tokens at %s: %s", path, error)
