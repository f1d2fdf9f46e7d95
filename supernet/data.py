"""Calibration and evaluation text: load it from one of several sources, pack it into token windows.

Sources (``load_texts(source, path=...)``):

- ``builtin``: the built-in corpus, the Python standard library (:mod:`supernet.reference.corpus`),
  ``split`` "train" or "eval";
- ``text``: a ``.txt`` file, or a folder searched recursively for ``.txt`` files (sorted), one text per file;
- ``jsonl``: a ``.jsonl`` file or a folder of them, one JSON object per line, the text under ``text_field``;
- ``hf_disk``: a ``datasets`` dataset saved with ``save_to_disk`` (needs ``pip install datasets``);
- ``parquet``: a ``.parquet`` file or a folder of them, the text in column ``text_field`` (needs pyarrow).

Packing follows the pruning literature (SparseGPT, Wanda, FLAP): documents are joined with eos and
cut into non-overlapping windows of ``seq_len`` tokens; a seeded shuffle picks which windows are kept.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Callable

    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)


def _existing(path: str | None, source: str) -> Path:
    if path is None:
        raise UsageError(f"data source {source!r} needs a path: pass path=<file or folder>")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise UsageError(f"data path {str(resolved)!r} does not exist: check the path")
    return resolved


def _files(root: Path, suffix: str) -> list[Path]:
    """``root`` itself if a file, else every ``*suffix`` file below it, sorted; never empty."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob(f"*{suffix}") if p.is_file())
    if not files:
        raise UsageError(f"no {suffix} files under {str(root)!r}: point path at a {suffix} file or a folder of them")
    return files


def _read_text_files(root: Path) -> list[str]:
    texts = []
    for file in _files(root, ".txt"):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"{str(file)!r} is not UTF-8 text (byte {exc.start}): give text files") from exc
        if not text.strip():
            raise UsageError(f"text file {str(file)!r} is empty: remove it or fill it")
        texts.append(text)
    return texts


def _read_jsonl_line(line: str, file: Path, number: int, text_field: str) -> str:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise UsageError(f"{file}:{number} is not valid JSON ({error.msg}): write one JSON object per line") from None
    if not isinstance(record, dict) or not isinstance(record.get(text_field), str):
        raise UsageError(
            f"{file}:{number} has no string field {text_field!r}: set text_field to the field with the text"
        )
    return record[text_field]


def _read_jsonl_files(root: Path, text_field: str) -> list[str]:
    texts = []
    for file in _files(root, ".jsonl"):
        with file.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if line.strip():
                    texts.append(_read_jsonl_line(line, file, number, text_field))
    return texts


def _column(names: list[str], text_field: str, where: Path) -> None:
    if text_field not in names:
        raise UsageError(f"{str(where)!r} has no column {text_field!r} (columns: {', '.join(names)}): set text_field")


def _read_hf_disk(root: Path, text_field: str, split: str) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise UsageError("data source 'hf_disk' needs the datasets library: pip install datasets") from None
    dataset = datasets.load_from_disk(str(root))
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise UsageError(f"{str(root)!r} has no split {split!r} (splits: {', '.join(dataset)}): set split")
        dataset = dataset[split]
    _column(list(dataset.column_names), text_field, root)
    return list(dataset[text_field])


def _read_parquet(root: Path, text_field: str) -> list[str]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("data source 'parquet' needs the pyarrow library: pip install pyarrow") from None
    texts = []
    for file in _files(root, ".parquet"):
        table = pq.read_table(file)
        _column(table.column_names, text_field, file)
        texts.extend(table.column(text_field).to_pylist())
    return texts


def _read_builtin(split: str) -> list[str]:
    from supernet.reference.corpus import corpus_texts

    return corpus_texts(split)


SOURCES: dict[str, Callable[[Path | None, str, str], list[str]]] = {
    "builtin": lambda root, text_field, split: _read_builtin(split),
    "text": lambda root, text_field, split: _read_text_files(root),
    "jsonl": lambda root, text_field, split: _read_jsonl_files(root, text_field),
    "hf_disk": lambda root, text_field, split: _read_hf_disk(root, text_field, split),
    "parquet": lambda root, text_field, split: _read_parquet(root, text_field),
}


def load_texts(source: str, *, path: str | None = None, text_field: str = "text", split: str = "train") -> list[str]:
    """Load the non-empty texts of a data source.

    Args:
        source: one of ``builtin``, ``text``, ``jsonl``, ``hf_disk``, ``parquet``.
        path: file or folder; required for every source but ``builtin``.
        text_field: the JSON field or column holding the text (``jsonl``, ``hf_disk``, ``parquet``).
        split: ``train`` or ``eval`` for ``builtin``; the split of a saved ``DatasetDict`` for ``hf_disk``.
    """
    if source not in SOURCES:
        raise UsageError(f"unknown data source {source!r}: use one of {', '.join(SOURCES)}")
    root = None if source == "builtin" else _existing(path, source)
    texts = [text for text in SOURCES[source](root, text_field, split) if text and text.strip()]
    if not texts:
        raise UsageError(f"data source {source!r} at {path!r} holds no text: check path and text_field")
    logger.info("loaded %d texts (%d characters) from %s", len(texts), sum(map(len, texts)), source)
    return texts


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
    windows a seed picks never depends on the cache."""
    key = _stream_key(tokenizer, texts)
    path = None if key is None else _tokens_root() / f"{key}.safetensors"
    if path is not None and path.is_file():
        from safetensors.torch import load_file

        try:
            return load_file(path)["stream"]
        except Exception:  # a truncated or foreign file: tokenize again and overwrite it
            logger.warning("token cache %s is unreadable; rebuilding it", path)
    encoded = tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    separator = [] if tokenizer.eos_token_id is None else [tokenizer.eos_token_id]
    if not separator:
        logger.warning("the tokenizer has no eos token: documents are joined without a separator")
    tokens = [token for ids in encoded for token in (*ids, *separator)][: -len(separator) or None]
    stream = torch.tensor(tokens, dtype=torch.int32)
    if path is not None:
        _save_atomic(stream, path)
    return stream


def _stream_key(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> str | None:
    """sha256 of the fast tokenizer's full definition, its eos id and the texts; None when not a fast one."""
    import hashlib

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    digest = hashlib.sha256(backend.to_str().encode())
    digest.update(str(tokenizer.eos_token_id).encode())
    for text in texts:
        digest.update(len(text).to_bytes(8, "little"))
        digest.update(text.encode())
    return digest.hexdigest()[:32]


def _tokens_root() -> Path:
    from supernet.cache import default_root

    return default_root().parent / "tokens"


def _save_atomic(stream: torch.Tensor, path: Path) -> None:
    from safetensors.torch import save_file

    from supernet.files import atomic_path

    try:
        with atomic_path(path) as tmp:
            save_file({"stream": stream}, str(tmp))
    except OSError as error:  # a read-only cache only costs the speed-up
        logger.warning("could not cache tokens at %s: %s", path, error)
