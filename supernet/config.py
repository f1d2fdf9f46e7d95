"""Typed configs of the supernet side: the model, the text, the budget and the supernet itself.

Every field has a working default and a comment with its unit and reason; ``__post_init__`` checks
what can be checked without loading anything. Hydra builds these from ``conf/`` presets and the
command line (``search/config.py`` registers them).
"""

from __future__ import annotations

from dataclasses import dataclass

from supernet.errors import UsageError

DTYPES = ("float32", "bfloat16", "float16")
DATA_SOURCES = ("builtin", "text", "jsonl", "hf_disk", "parquet")
BUDGET_KINDS = ("block_params",)


@dataclass
class ModelConfig:
    path: str | None = None  # local Hugging Face directory; None = the built-in reference model
    reference: str = "default"  # built-in reference variant when path is None: default | tiny
    dtype: str = "float32"  # weights are loaded in this dtype; statistics are always float32/64

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise UsageError(f"model.dtype={self.dtype!r} is not one of {', '.join(DTYPES)}")


@dataclass
class DataConfig:
    source: str = "builtin"  # builtin (stdlib corpus) | text | jsonl | hf_disk | parquet
    path: str | None = None  # file or folder for every source but builtin
    eval_path: str | None = None  # held-out text; None = builtin eval split, or `path` for other sources
    text_field: str = "text"  # field holding the text in jsonl / datasets rows
    seq_len: int = 256  # calibration sequence length in tokens
    calib_sequences: int = 32  # calibration sequences (32 x 256 = 8k tokens by default)
    eval_seq_len: int = 256  # perplexity window; the pruning literature uses 128 (FLAP) or 2048 (Wanda)
    eval_sequences: int | None = 64  # held-out windows scored; None = all of the held-out text
    batch_size: int = 8  # sequences per forward pass

    def __post_init__(self) -> None:
        if self.source not in DATA_SOURCES:
            raise UsageError(f"data.source={self.source!r} is not one of {', '.join(DATA_SOURCES)}")
        if self.source != "builtin" and self.path is None:
            raise UsageError(f"data.source={self.source} needs data.path=<file or folder>")
        for name in ("seq_len", "calib_sequences", "eval_seq_len", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"data.{name}={getattr(self, name)} must be a positive integer")


@dataclass
class BudgetConfig:
    kind: str = "block_params"  # what is counted: parameters of the transformer blocks
    keep: float = 0.5  # fraction of that count to keep, in (0, 1]

    def __post_init__(self) -> None:
        if self.kind not in BUDGET_KINDS:
            raise UsageError(f"budget.kind={self.kind!r} is not one of {', '.join(BUDGET_KINDS)}")
        if not 0.0 < self.keep <= 1.0:
            raise UsageError(f"budget.keep={self.keep} is outside (0, 1]: give the fraction of parameters to keep")


@dataclass
class SupernetConfig:
    criterion: str = "magnitude"  # local criterion that ranks units inside a module
    channel_quantum: int = 8  # MLP widths are multiples of this (64/128 for hardware-friendly widths)

    def __post_init__(self) -> None:
        if self.channel_quantum < 1:
            raise UsageError(f"supernet.channel_quantum={self.channel_quantum} must be >= 1")
