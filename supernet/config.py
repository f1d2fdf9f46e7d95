"""Typed configs of the supernet side: the model, the text, the budget and the supernet itself.

Every field has a working default and a comment with its unit and reason; ``__post_init__`` checks
what can be checked without loading anything. Hydra builds these from ``conf/`` presets and the
command line (``search/app/config.py`` registers them).
"""

from __future__ import annotations

from dataclasses import dataclass

from supernet.adapters.base import ATTN_UNITS
from supernet.adapters.moe import EXPERT_UNITS
from supernet.compensation import COMPENSATIONS
from supernet.criteria import CRITERIA
from supernet.errors import UsageError, check_choice
from supernet.expert_criteria import EXPERT_CRITERIA
from supernet.statistics import GRAM_DTYPES, PROPAGATE

DTYPES = ("float32", "bfloat16", "float16")  # model.dtype, supernet.store_dtype, proxy.kl_cache_dtype
DATA_SOURCES = ("builtin", "text", "jsonl", "hf_disk", "parquet")
BUDGET_KINDS = ("block_params", "total_params", "flops", "active_params")


@dataclass
class ModelConfig:
    path: str | None = None  # local Hugging Face directory; None = the built-in reference model
    reference: str = "default"  # built-in reference variant when path is None: default | tiny
    dtype: str = "float32"  # weights are loaded in this dtype; statistics are always float32/64

    def __post_init__(self) -> None:
        check_choice("model.dtype", self.dtype, DTYPES)


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


def check_device(device: str, *, available: bool = False) -> None:
    """Refuse a device torch cannot parse; with ``available``, also CUDA where there is none (checked
    when the run starts, not when a config is composed: a cluster's config is valid on a laptop)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"device={device!r} is not a torch device: use cpu, cuda or cuda:N") from exc
    if not available:
        return
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device={device} but this machine has no CUDA GPU torch can use: use device=cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UsageError(f"device={device} but there are {torch.cuda.device_count()} CUDA devices")


def resolve_data_source(model: ModelConfig, data: DataConfig) -> None:
    """``data.source=None``: the built-in corpus for the reference model; a user model must name its text."""
    if data.source is not None:
        return
    if model.path is not None:
        raise UsageError(
            f"model.path={model.path} needs calibration text: give data.source=text|jsonl|hf_disk|parquet "
            "with data.path=<file or folder> (or data.source=builtin to calibrate on Python source on purpose)"
        )
    data.source = "builtin"


@dataclass
class BudgetConfig:
    kind: str = "block_params"  # what is counted: block_params | total_params | flops | active_params (the
    # parameters one token uses: a mixture's top-k experts; supernet/budget.py)
    keep: float = 0.5  # fraction of that count to keep, in (0, 1]
    seq_len: int = 2048  # flops: tokens of the sequence the FLOPs are counted on (attention grows with it)

    def __post_init__(self) -> None:
        check_choice("budget.kind", self.kind, BUDGET_KINDS)
        if not 0.0 < self.keep <= 1.0:
            raise UsageError(f"budget.keep={self.keep} is outside (0, 1]: give the fraction of parameters to keep")
        if self.seq_len < 1:
            raise UsageError(f"budget.seq_len={self.seq_len} must be a positive number of tokens")


OBS_COMPENSATIONS = ("refit_intercept", "refit")  # the OBS update's exact form on the kept columns


@dataclass
class SupernetConfig:
    criterion: str = "obs"  # local criterion ranking units in a module: magnitude | wanda_sp | flap | obs
    compensation: str = "refit_intercept"  # added to the output projection per level: none | bias (FLAP) | refit
    # (least squares) | refit_intercept (least squares with a bias term); obs needs refit or refit_intercept
    propagate: str = "dense"  # next layer's calibration input: dense outputs, or "expected" (target-level variant, Týr)
    radius: int = 4  # coarse levels each module may move around its target: 4 -> 9 levels, +-50% (Týr)
    level_fraction: float = 0.125  # a coarse level's share of its module (Týr: 12.5%); mutations move by it
    attn_unit: str = "group"  # attention unit: group (a GQA group) | head (a query head of every group; K/V stay)
    attn_step: int = 1  # GQA groups (head: query heads per group) per attention level: the finest change
    channel_quantum: int = 8  # MLP widths are multiples of this (64/128 for hardware-friendly widths)
    expert_criterion: str = "reap"  # ranks a MoE layer's whole experts: reap (gate x output norm) | frequency
    expert_unit: str = "expert"  # a MoE layer's MLP units: whole experts | channel (one channel of every expert)
    # | both (an expert count and the experts' width per layer, costed together: one search trades them)
    joint_budget: bool = True  # one budget over attention and MLP; false: attention keeps the uniform group count
    damping: float = 0.01  # H += damping * mean(diag H) * I before OBS and refit (SparseGPT's percdamp)
    obs_rounds: int = 16  # rounds of greedy OBS removal in an MLP (Týr: 16); attention removes one group a round
    gram_dtype: str = "float32"  # accumulation dtype of H = X^T X (float64 doubles its memory)
    solve_dtype: str = "float64"  # dtype of the OBS and refit solves, on the model's device: float32 is a GPU's
    # fast path (its error against float64 is measured by bench.scale); bias compensation stays float64
    store_dtype: str = "bfloat16"  # dtype refit columns are cached and installed in (bias vectors stay float32)
    calib_batch_size: int = 8  # calibration sequences per layer call
    calib_offload: bool | None = None  # hidden states of the calibration batches kept on the host between
    # layers (moved to the device per layer call); null: when the model is on a GPU

    def __post_init__(self) -> None:
        for name, allowed in (
            ("criterion", CRITERIA),
            ("compensation", COMPENSATIONS),
            ("propagate", PROPAGATE),
            ("store_dtype", DTYPES),
            ("gram_dtype", GRAM_DTYPES),
            ("solve_dtype", GRAM_DTYPES),
            ("attn_unit", ATTN_UNITS),
            ("expert_criterion", EXPERT_CRITERIA),
            ("expert_unit", EXPERT_UNITS),
        ):
            check_choice(f"supernet.{name}", getattr(self, name), allowed)
        for name in ("attn_step", "channel_quantum", "obs_rounds", "calib_batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"supernet.{name}={getattr(self, name)} must be >= 1")
        if (self.criterion, self.compensation) not in supernet_pairs():
            raise UsageError(
                f"supernet.criterion=obs ranks units by the loss left after its weight update, which "
                f"supernet.compensation={self.compensation} does not apply: use supernet.compensation="
                f"{'|'.join(OBS_COMPENSATIONS)} (or another criterion)"
            )
        if self.radius < 0:
            raise UsageError(f"supernet.radius={self.radius} must be >= 0")
        if not 0.0 < self.level_fraction <= 1.0:
            raise UsageError(f"supernet.level_fraction={self.level_fraction} is outside (0, 1]: a module's share")
        if not 0.0 <= self.damping < 1.0:
            raise UsageError(f"supernet.damping={self.damping} is outside [0, 1): a fraction of mean(diag H)")

    @property
    def needs_gram(self) -> bool:
        """Whether calibration must accumulate H = X^T X."""
        from supernet import compensation, criteria

        return self.criterion in criteria.NEEDS_GRAM or self.compensation in compensation.NEEDS_GRAM


def supernet_pairs() -> list[tuple[str, str]]:
    """Every (criterion, compensation) a ``SupernetConfig`` accepts: all pairs but OBS without its update."""
    return [(c, k) for c in CRITERIA for k in COMPENSATIONS if c != "obs" or k in OBS_COMPENSATIONS]
