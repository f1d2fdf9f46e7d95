"""Fitness of an allocation: install it through the supernet, score it with a proxy on a token stage.

Multi-stage selection (EvoPress, Týr) scores offspring on few calibration tokens and survivors on
more: stage ``s`` uses the first ``stage_tokens[s]`` tokens of the calibration windows, and has its
own proxy instance prepared once on those tokens with the dense model (teacher logits are cached,
never recomputed). Scores are cached per (levels, stage), so an allocation is never scored twice.
The in-process evaluator and the Ray actor (search/workers.py) share this class.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from proxies import as_batches, make_proxy

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from transformers import PreTrainedModel

    from proxies.config import ProxyConfig
    from supernet.build import Supernet
    from supernet.switch import Switcher

log = logging.getLogger(__name__)


def stage_windows(calib: torch.Tensor, stage_tokens: Sequence[int]) -> list[torch.Tensor]:
    """The first ceil(tokens / seq_len) calibration windows for each stage. calib: [n, seq_len]."""
    n, seq_len = calib.shape
    out = []
    for tokens in stage_tokens:
        windows = min(n, max(1, math.ceil(tokens / seq_len)))
        out.append(calib[:windows])
    return out


class Evaluator:
    """Scores allocations (levels in grid order) on one live model; lower is better."""

    def __init__(
        self,
        model: PreTrainedModel,
        switcher: Switcher,
        supernet: Supernet,
        proxy: ProxyConfig,
        stages: Sequence[torch.Tensor],
        *,
        batch_size: int = 8,
        prescreen: str | None = None,
    ) -> None:
        self.model = model
        self.switcher = switcher
        self.supernet = supernet
        self.proxy_name = proxy.name
        self.batches = [as_batches(tokens, batch_size) for tokens in stages]
        self.stage_tokens = [int(tokens.numel()) for tokens in stages]
        switcher.apply(dict.fromkeys(switcher.current))  # the dense model, for what proxies cache
        self.proxies = []
        for batches in self.batches:
            scorer = make_proxy(proxy.name, switcher, **proxy.options())
            scorer.prepare(model, batches)
            self.proxies.append(scorer)
        self.prescreener = None
        if prescreen is not None:
            self.prescreener = make_proxy(prescreen, switcher, **proxy.options(prescreen))
            self.prescreener.prepare(model, self.batches[0])
        self.cache: dict[tuple[tuple[int, ...], int], float] = {}
        self.evaluations = 0  # proxy calls actually made (cache hits excluded)
        self.forward_tokens = 0  # tokens the proxy calls pushed through the model

    @property
    def stages(self) -> int:
        return len(self.proxies)

    def score(self, levels: Sequence[int], stage: int) -> float:
        """Proxy value of ``levels`` on stage ``stage``'s tokens (cached)."""
        key = (tuple(int(lv) for lv in levels), stage)
        if key not in self.cache:
            self.supernet.apply(self.switcher, key[0])
            self.cache[key] = float(self.proxies[stage].score(self.model, self.batches[stage]))
            self.evaluations += 1
            self.forward_tokens += self.stage_tokens[stage]
        return self.cache[key]

    def use(self, supernet: Supernet) -> None:
        """Score later allocations through ``supernet`` (a coarse-to-fine refinement): levels now index
        its grid, so the score cache starts empty; the proxies' dense references stay valid."""
        self.supernet = supernet
        self.cache.clear()

    def close(self) -> None:
        """Nothing to release in-process (the Ray pool's ``close`` ends its actors)."""

    def score_many(self, batch: Sequence[Sequence[int]], stage: int) -> list[float]:
        """``score`` of every allocation in ``batch``, in order (a Ray pool spreads them over actors)."""
        return [self.score(levels, stage) for levels in batch]

    def prescreen_many(self, batch: Sequence[Sequence[int]]) -> list[float]:
        return [self.prescreen(levels) for levels in batch]

    def prescreen(self, levels: Sequence[int]) -> float:
        """The zero-shot prescreen proxy's value on the first stage's tokens (cached as stage -1)."""
        assert self.prescreener is not None, "no prescreen proxy was configured"
        key = (tuple(int(lv) for lv in levels), -1)
        if key not in self.cache:
            self.supernet.apply(self.switcher, key[0])
            self.cache[key] = float(self.prescreener.score(self.model, self.batches[0]))
            self.forward_tokens += self.stage_tokens[0]
        return self.cache[key]
