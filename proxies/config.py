"""Typed configs of the proxies: which proxy scores candidates (``proxy=NAME``), and the proxy report.

``search/app/config.py`` registers ``ProxyConfig`` as the config group ``proxy`` (one preset per proxy
name, so ``proxy=trace_correlation`` selects it) and ``ProxyReportConfig`` as the schema of
``conf/proxies.yaml`` (the ``strata-proxies`` app).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from proxies import PROXY_NAMES
from supernet.config import BudgetConfig, DataConfig, ModelConfig, SupernetConfig, check_device, resolve_data_source
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


@dataclass
class ProxyReportConfig:
    """``strata-proxies``: how well does each proxy rank candidates by held-out perplexity?"""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)  # calibration windows feed the proxies
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)  # variants and level grid of the candidates
    proxy: ProxyConfig = field(default_factory=ProxyConfig)  # options of every proxy (its name is unused here)
    proxies: list[str] = field(default_factory=lambda: list(PROXY_NAMES))  # proxies compared
    candidates: int = 40  # candidates scored, all on the budget
    max_walk: int | None = None  # longest random level-switch walk; None = 2 * modules
    allocators: bool = True  # add the no-search allocators' candidates (uniform, flap_global, depth_linear)
    bootstrap: int = 1000  # bootstrap resamples for the 95% intervals
    seed: int = 0  # seeds the candidates, the data windows and the bootstrap
    device: str = "cpu"  # torch device of the model
    progress: bool = True  # progress bars

    def __post_init__(self) -> None:
        resolve_data_source(self.model, self.data)
        check_device(self.device)
        if not self.proxies:
            raise UsageError(f"proxies=[] names no proxy: use some of {', '.join(PROXY_NAMES)}")
        for name in self.proxies:
            _check_name(name, "proxies")
        if self.candidates < 3:
            raise UsageError(f"candidates={self.candidates} is too few to rank: use >= 3")
        if self.bootstrap < 1:
            raise UsageError(f"bootstrap={self.bootstrap} must be a positive integer")
        if self.max_walk is not None and self.max_walk < 0:
            raise UsageError(f"max_walk={self.max_walk} must be >= 0")
