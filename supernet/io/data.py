"""Calibration and evaluation text: load it from one of several sources, pack it into token windows.

Sources (``load_texts(source, path=...)``):

- ``builtin``: the built-in corpus, the Python standard library (:mod:`supernet.io.reference.corpus`),
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supernet.errors import UsageError, check_choice

if TYPE_CHECKING:
    from collections.abc import Callable


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


def _not_text(type_name: str, text_field: str, where: Path) -> UsageError:
    return UsageError(f"{str(where)!r} column {text_field!r} holds {type_name}, not text: set text_field to a "
                      "string column")  # fmt: skip


def _read_hf_disk(root: Path, text_field: str, split: str) -> list[str]:
    try:
        import datasets
    except ImportError:
        raise UsageError("data source 'hf_disk' needs the datasets library: pip install datasets") from None
    try:
        dataset = datasets.load_from_disk(str(root))
    except FileNotFoundError:  # datasets' message for a folder without dataset_info.json / dataset_dict.json
        raise UsageError(
            f"{str(root)!r} is not a dataset saved with save_to_disk (no dataset_info.json or dataset_dict.json): "
            "point data.path at the folder save_to_disk wrote, or use data.source=text|jsonl|parquet"
        ) from None
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise UsageError(f"{str(root)!r} has no split {split!r} (splits: {', '.join(dataset)}): set split")
        dataset = dataset[split]
    _column(list(dataset.column_names), text_field, root)
    feature = dataset.features[text_field]
    if not (isinstance(feature, datasets.Value) and feature.dtype in ("string", "large_string", "string_view")):
        raise _not_text(getattr(feature, "dtype", type(feature).__name__), text_field, root)
    return list(dataset[text_field])


def _is_text(arrow_type) -> bool:
    """Whether a pyarrow column of ``arrow_type`` holds strings (plain, large, view or dictionary-encoded)."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    is_view = getattr(pa.types, "is_string_view", lambda _: False)
    return pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or is_view(arrow_type)


def _read_parquet(root: Path, text_field: str) -> list[str]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError("data source 'parquet' needs the pyarrow library: pip install pyarrow") from None
    texts = []
    for file in _files(root, ".parquet"):
        try:
            schema = pq.read_schema(file)
            _column(schema.names, text_field, file)
            if not _is_text(schema.field(text_field).type):
                raise _not_text(str(schema.field(text_field).type), text_field, file)
            column = pq.read_table(file, columns=[text_field]).column(text_field)
        except (pa.ArrowException, OSError) as error:
            why = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
            raise UsageError(f"{str(file)!r} is not a readable parquet file ({why}): give .parquet files "
                             "(pandas to_parquet, pyarrow write_table) or another data.source") from None  # fmt: skip
        texts.extend(column.to_pylist())
    return texts


def _read_builtin(split: str) -> list[str]:
    from supernet.io.reference.corpus import corpus_texts

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


DATA_SOURCES = ("builtin", "text", "jsonl", "hf_disk", "parquet")


@dataclass
class DataConfig:
    source: str | None = None  # builtin (stdlib corpus) | text | jsonl | hf_disk | parquet; None: builtin for the
    # reference model, and an error with model.path (a user model is not calibrated on Python source by accident)
    path: str | None = None  # file or folder for every source but builtin
    eval_path: str | None = None  # held-out text; None = builtin eval split, or `path` for other sources
    text_field: str = "text"  # field holding the text in jsonl / datasets rows
    seq_len: int = 256  # calibration sequence length in tokens
    calib_sequences: int = 32  # calibration sequences (32 x 256 = 8k tokens by default)
    eval_seq_len: int = 256  # perplexity window; the pruning literature uses 128 (FLAP) or 2048 (Wanda)
    eval_sequences: int | None = 64  # held-out windows scored; None = all of the held-out text
    batch_size: int = 8  # sequences per forward pass

    def __post_init__(self) -> None:
        if self.source is not None:
            check_choice("data.source", self.source, DATA_SOURCES)
        if self.source not in (None, "builtin") and self.path is None:
            raise UsageError(f"data.source={self.source} needs data.path=<file or folder>")
        for name in ("seq_len", "calib_sequences", "eval_seq_len", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"data.{name}={getattr(self, name)} must be a positive integer")
        if self.eval_sequences is not None and self.eval_sequences < 1:
            raise UsageError(f"data.eval_sequences={self.eval_sequences} must be >= 1, or null for all of the "
                             "held-out text")  # fmt: skip


def resolve_data_source(model_path: str | None, data: DataConfig) -> None:
    """``data.source=None``: the built-in corpus for the reference model (``model.path`` None); a user model must
    name its text."""
    if data.source is not None:
        return
    if model_path is not None:
        raise UsageError(
            f"model.path={model_path} needs calibration text: give data.source=text|jsonl|hf_disk|parquet "
            "with data.path=<file or folder> (or data.source=builtin to calibrate on Python source on purpose)"
        )
    data.source = "builtin"
