"""The supernet's typed config: criteria, compensation and calibration, on the grid of ``GridConfig``.

Every field has a working default and a comment with its unit and reason; ``__post_init__`` checks
what can be checked without loading anything. Hydra builds these from ``conf/`` presets and the
command line (``search/app/config.py`` registers them).
"""

from __future__ import annotations

from dataclasses import dataclass

from supernet.errors import UsageError, check_choice
from supernet.io.adapters.base import ATTN_UNITS
from supernet.io.adapters.moe import EXPERT_UNITS
from supernet.io.dtypes import DTYPES
from supernet.io.streaming import check_stream
from supernet.space.grids import GridConfig
from supernet.variants.compensation import COMPENSATIONS
from supernet.variants.criteria import CRITERIA
from supernet.variants.expert_criteria import EXPERT_CRITERIA
from supernet.variants.statistics import GRAM_DTYPES, PROPAGATE

OBS_COMPENSATIONS = ("refit_intercept", "refit")  # the OBS update's exact form on the kept columns


@dataclass
class SupernetConfig(GridConfig):
    """How the supernet is built: criteria, compensation, calibration, on the level grid of ``GridConfig``."""

    criterion: str = "obs"  # local criterion ranking units in a module: magnitude | wanda_sp | flap | obs
    compensation: str = "refit_intercept"  # added to the output projection per level: none | bias (FLAP) | refit
    # (least squares) | refit_intercept (least squares with a bias term); obs needs refit or refit_intercept
    propagate: str = "dense"  # next layer's calibration input: dense outputs, or "expected" (target-level variant, Týr)
    attn_unit: str = "group"  # attention unit: group (a GQA group) | head (a query head of every group; K/V stay)
    expert_criterion: str = "reap"  # ranks a MoE layer's whole experts: reap (gate x output norm) | frequency
    expert_unit: str = "expert"  # a MoE layer's MLP units: whole experts | channel (one channel of every expert)
    # | both (an expert count and the experts' width per layer, costed together: one search trades them)
    damping: float = 0.01  # H += damping * mean(diag H) * I before OBS and refit (SparseGPT's percdamp)
    obs_rounds: int = 16  # rounds of greedy OBS removal in an MLP (Týr: 16); attention removes one group a round
    gram_dtype: str = "float32"  # accumulation dtype of H = X^T X (float64 doubles its memory)
    solve_dtype: str = "float64"  # dtype of the OBS and refit solves, on the model's device: float32 is a GPU's
    # fast path (its error against float64 is measured by bench.scale); bias compensation stays float64
    store_dtype: str = "bfloat16"  # dtype refit columns are cached and installed in (bias vectors stay float32)
    calib_batch_size: int = 8  # calibration sequences per layer call
    calib_offload: bool | None = None  # hidden states of the calibration batches kept on the host between
    # layers (moved to the device per layer call); null: when the model is on a GPU
    stream: str | bool = "auto"  # read the weights layer by layer from the safetensors files during the build
    # (memory: one layer, never the whole model): true | false | auto (when the model's bytes exceed 0.6 x the
    # free memory of its device, supernet/io/streaming.py); the same result either way, so not in the cache key

    def __post_init__(self) -> None:
        super().__post_init__()
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
        self.stream = check_stream(self.stream)
        for name in ("obs_rounds", "calib_batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"supernet.{name}={getattr(self, name)} must be >= 1")
        if (self.criterion, self.compensation) not in supernet_pairs():
            raise UsageError(
                f"supernet.criterion=obs ranks units by the loss left after its weight update, which "
                f"supernet.compensation={self.compensation} does not apply: use supernet.compensation="
                f"{'|'.join(OBS_COMPENSATIONS)} (or another criterion)"
            )
        if not 0.0 <= self.damping < 1.0:
            raise UsageError(f"supernet.damping={self.damping} is outside [0, 1): a fraction of mean(diag H)")

    @property
    def needs_gram(self) -> bool:
        """Whether calibration must accumulate H = X^T X."""
        from supernet.variants import compensation, criteria

        return self.criterion in criteria.NEEDS_GRAM or self.compensation in compensation.NEEDS_GRAM


def supernet_pairs() -> list[tuple[str, str]]:
    """Every (criterion, compensation) a ``SupernetConfig`` accepts: all pairs but OBS without its update."""
    return [(c, k) for c in CRITERIA for k in COMPENSATIONS if c != "obs" or k in OBS_COMPENSATIONS]
