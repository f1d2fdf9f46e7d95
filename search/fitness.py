"""Fitness of an allocation: install it through the supernet, score it with a proxy on a token stage.

Multi-stage selection (EvoPress, Týr) scores offspring on few tokens and survivors on more: stage ``s``
uses the first ``stage_tokens[s]`` tokens of the fitness windows, and has its own proxy instance
prepared once on those tokens with the dense model (teacher logits are cached, never recomputed).
Scores are cached per (levels, stage), so an allocation is never scored twice. The fitness windows are
held apart from the calibration windows the supernet was fitted on (``search.fitness=held_apart``,
search/app/run.py), so a candidate is not rewarded for fitting its own compensation's data.

With a :class:`~search.heal.selection.SelectionHeal` (``search.heal_tokens``), the last stage scores a healed copy
of each candidate instead of the live candidate (training-aware selection, DarwinLM).

With ``resample`` the stages before the last draw their windows afresh every generation
(:meth:`Evaluator.redraw`, as EvoPress resamples its calibration data), from the last stage's windows;
the last stage, which every complete trial's value comes from, keeps its windows, so complete values
stay comparable. The in-process evaluator and the Ray actor (search/workers.py) share this class.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch

from proxies import as_batches, make_proxy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel

    from proxies.config import ProxyConfig
    from search.heal.selection import SelectionHeal
    from supernet.variants.build import Supernet
    from supernet.variants.switch import Switcher

log = logging.getLogger(__name__)


def windows_for(tokens: int, seq_len: int) -> int:
    """Windows of ``seq_len`` a stage of ``tokens`` tokens takes: ceil(tokens / seq_len), at least one."""
    return max(1, math.ceil(tokens / seq_len))


def stage_windows(windows: torch.Tensor, stage_tokens: Sequence[int]) -> list[torch.Tensor]:
    """The first ceil(tokens / seq_len) fitness windows for each stage. windows: [n, seq_len]."""
    n, seq_len = windows.shape
    return [windows[: min(n, windows_for(tokens, seq_len))] for tokens in stage_tokens]


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
        heal: SelectionHeal | None = None,
    ) -> None:
        self.model = model
        self.switcher = switcher
        self.supernet = supernet
        self.proxy = proxy
        self.proxy_name = proxy.name
        self.batch_size = batch_size
        self.windows = list(stages)  # [windows, seq_len] per stage
        self.batches = [as_batches(tokens, batch_size) for tokens in stages]
        self.stage_tokens = [int(tokens.numel()) for tokens in stages]
        self.draw = 0  # which random draw the stages before the last are on (redraw)
        switcher.apply(dict.fromkeys(switcher.current))  # the dense model, for what proxies cache
        self.proxies = [self._prepared(batches) for batches in self.batches]
        self.prescreen_name = prescreen
        self.prescreener = self._prepared(self.batches[0], prescreen) if prescreen is not None else None
        self.heal = heal  # the last stage scores healed copies (training-aware selection)
        if heal is not None:
            heal.prepare(model)  # the teacher cache, from the dense model installed above
        self.cache: dict[tuple[tuple[int, ...], int, int], float] = {}  # (levels, stage, draw) -> value
        self.evaluations = 0  # proxy calls actually made (cache hits excluded)
        self.healed = 0  # of them, candidates healed before their last-stage score (search.heal_tokens)
        self.forward_tokens = 0  # tokens the proxy calls pushed through the model

    def _prepared(self, batches, name: str | None = None):
        """Proxy ``name`` (default: the fitness proxy) prepared on ``batches`` with the model as it stands."""
        name = name or self.proxy.name
        scorer = make_proxy(name, self.switcher, **self.proxy.options(name))
        scorer.prepare(self.model, batches)
        return scorer

    @property
    def stages(self) -> int:
        return len(self.proxies)

    def redraw(self, draw: int) -> None:
        """Stages before the last take a seeded random subset (``draw``) of the last stage's windows, as
        many as they had; their proxies are prepared again on the dense model. The last stage stays."""
        last = self.windows[-1]
        generator = torch.Generator().manual_seed(draw)
        self.switcher.apply(dict.fromkeys(self.switcher.current))
        for stage in range(self.stages - 1):
            picked = last[torch.randperm(len(last), generator=generator)[: len(self.windows[stage])]]
            self.batches[stage] = as_batches(picked, self.batch_size)
            self.proxies[stage] = self._prepared(self.batches[stage])
        if self.prescreener is not None:  # it scores the first stage's windows
            self.prescreener = self._prepared(self.batches[0], self.prescreen_name)
        self.draw = draw

    def score(self, levels: Sequence[int], stage: int) -> float:
        """Proxy value of ``levels`` on stage ``stage``'s tokens (cached)."""
        key = (tuple(int(lv) for lv in levels), stage, self.draw if stage < self.stages - 1 else 0)
        if key not in self.cache:
            self.supernet.apply(self.switcher, key[0])
            if self.heal is not None and stage == self.stages - 1:
                healed = self.heal.healed_copy(self.model, self.switcher.shapes())
                self.cache[key] = float(self.proxies[stage].score_standalone(healed, self.batches[stage]))
                self.healed += 1
            else:
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
        """Remove a selection heal's teacher cache (the Ray pool's ``close`` ends its actors)."""
        if self.heal is not None:
            self.heal.close()

    def score_many(self, batch: Sequence[Sequence[int]], stage: int) -> list[float]:
        """``score`` of every allocation in ``batch``, in order (a Ray pool spreads them over actors)."""
        return [self.score(levels, stage) for levels in batch]

    def prescreen_many(self, batch: Sequence[Sequence[int]]) -> list[float]:
        return [self.prescreen(levels) for levels in batch]

    def prescreen(self, levels: Sequence[int]) -> float:
        """The zero-shot prescreen proxy's value on the first stage's tokens (cached as stage -1)."""
        assert self.prescreener is not None, "no prescreen proxy was configured"
        key = (tuple(int(lv) for lv in levels), -1, self.draw)
        if key not in self.cache:
            self.supernet.apply(self.switcher, key[0])
            self.cache[key] = float(self.prescreener.score(self.model, self.batches[0]))
            self.forward_tokens += self.stage_tokens[0]
        return self.cache[key]
