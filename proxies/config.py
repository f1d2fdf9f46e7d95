"""Typed configs of the proxies: which proxy scores candidates (``proxy=NAME``), and the proxy report.

``search/app/config.py`` registers ``ProxyConfig`` as the config group ``proxy`` (one preset per proxy
name, so ``proxy=trace_correlation`` selects it) and ``ProxyReportConfig`` as the schema of
``conf/proxies.yaml`` (the ``strata-proxies`` app).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proxies import PROXY_NAMES
from supernet.errors import UsageError


def _check_name(name: str, where: str) -> None:
    if name not in PROXY_NAMES:
        raise UsageError(f"{where}={name!r} is not a proxy: use one of {', '.join(PROXY_NAMES)}")


@dataclass
class ProxyConfig:
    name: str = "kl"  # the proxy that scores candidates: kl | ppl | trace_correlation | hidden_covariance | ...
    kl_top_k: int = 8192  # teacher entries cached per token (Týr: 8192; EvoPress: >= 512 is enough)
    kl_cache_dtype: str = "float32"  # teacher logits dtype; bfloat16 = Týr's 6 bytes per entry
    projection_rank: int = 0  # trace_correlation: 0 = full gradients; r = seeded projection (TraceNAS: 64)
    hidden_layer: int = -1  # hidden_covariance: decoder layer whose output is scored (-1 = the last)
    flops_seq_len: int | None = None  # flops: sequence length in tokens; None = the calibration windows'
    seed: int = 0  # seeds trace_correlation's random projection

    def __post_init__(self) -> None:
        _check_name(self.name, "proxy.name")
        if self.kl_top_k < 1:
            raise UsageError(f"proxy.kl_top_k={self.kl_top_k} must be >= 1")
        if self.projection_rank < 0:
            raise UsageError(f"proxy.projection_rank={self.projection_rank} must be >= 0 (0 = full gradients)")

    def options(self, name: str | None = None) -> dict[str, Any]:
        """Keyword arguments of proxy ``name`` (default: this config's own) taken from the fields."""
        per_proxy = {
            "kl": {"top_k": self.kl_top_k, "cache_dtype": self.kl_cache_dtype},
            "trace_correlation": {"projection_rank": self.projection_rank, "seed": self.seed},
            "hidden_covariance": {"layer": self.hidden_layer},
            "flops": {"seq_len": self.flops_seq_len},
        }
        return per_proxy.get(name or self.name, {})
