"""Scores of whole experts in a mixture-of-experts layer, from its routing on the calibration tokens.

During calibration a hook on the layer's experts module sees, for every token, the top-k experts the
router chose and their weights g_e(x) (after the family's renormalisation), and recomputes each chosen
expert's output f_e(x) on its tokens. Per expert e, over the n calibration tokens:

- ``frequency``: |X_e| / n, the share of tokens routed to e (frequency-based expert pruning, the common
  baseline: experts ranked by how often the router picks them);
- ``reap``: (1 / |X_e|) sum_{x in X_e} g_e(x) ||f_e(x)||_2, the router-weighted expert activation norm
  (REAP, ICLR 2026): how much an expert adds where it is used.

X_e is the set of tokens routed to e; an expert no token chose scores 0 under both. Higher is kept first.

With channel units (``supernet.expert_unit=channel``) each expert ranks its own channels j by Wanda-sp's
score on what its down projection sees, x = g_e(x) h_e(x) (h: the gated activation; the output is
``down_proj(x)``): ||x_j||_2 over X_e times ||W_down[:, j]||_2 (:func:`channel_scores`). Experts carry no
bias, so nothing compensates a removed channel's mean: the score counts the mean with the spread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from supernet.errors import check_choice


@dataclass
class RoutingStats:
    """What the router did with n calibration tokens, per expert."""

    count: int  # n, tokens seen
    routed: torch.Tensor  # [E] float64, tokens routed to each expert (|X_e|)
    gate_sum: torch.Tensor  # [E] float64, sum of g_e(x) over X_e
    reap_sum: torch.Tensor  # [E] float64, sum of g_e(x) ||f_e(x)||_2 over X_e
    channel_sq: torch.Tensor | None = None  # [E, I] float64, sum over X_e of (g_e(x) h_e(x)_j)^2 (channel units)


class RoutingAccumulator:
    """Streams the routing of calibration batches into :class:`RoutingStats` (a forward pre-hook on the
    experts module: its inputs are the hidden states [tokens, H], top-k indices and top-k weights [tokens, k])."""

    def __init__(self, experts: int, *, channels: int = 0, device: torch.device | str = "cpu") -> None:
        """``channels``: each expert's width, to accumulate its channels' statistics too (0: experts only)."""
        self.count = 0
        self.channel_sq = torch.zeros(experts, channels, dtype=torch.float64, device=device) if channels else None
        self.routed = torch.zeros(experts, dtype=torch.float64, device=device)
        self.gate_sum = torch.zeros(experts, dtype=torch.float64, device=device)
        self.reap_sum = torch.zeros(experts, dtype=torch.float64, device=device)

    def attach(self, experts_module: nn.Module):
        """Register the hook on ``experts_module``; returns its handle."""
        return experts_module.register_forward_pre_hook(lambda module, args: self.update(module, *args[:3]))

    @torch.no_grad()
    def update(self, module: nn.Module, hidden: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> None:
        """hidden: [tokens, H]; index, weights: [tokens, k] the chosen experts and their weights."""
        self.count += hidden.shape[0]
        for e in index.unique().tolist():
            token, slot = torch.where(index == e)
            g = weights[token, slot].double()  # [|X_e| in this batch]
            gate, up = nn.functional.linear(hidden[token], module.gate_up_proj[e]).chunk(2, dim=-1)
            h = module.act_fn(gate) * up  # [|X_e|, I]
            out = nn.functional.linear(h, module.down_proj[e])  # [|X_e|, H]
            if self.channel_sq is not None:
                self.channel_sq[e] += (g[:, None] * h.double()).pow(2).sum(dim=0)
            self.routed[e] += len(token)
            self.gate_sum[e] += g.sum()
            self.reap_sum[e] += (g * out.double().norm(dim=-1)).sum()

    def finalize(self) -> RoutingStats:
        assert self.count > 0, "no calibration token reached this MoE layer"
        return RoutingStats(self.count, self.routed, self.gate_sum, self.reap_sum, self.channel_sq)


def frequency(stats: RoutingStats) -> torch.Tensor:
    """|X_e| / n per expert: [E] float64."""
    return stats.routed / stats.count


def reap(stats: RoutingStats) -> torch.Tensor:
    """Mean of g_e(x) ||f_e(x)||_2 over the tokens routed to e (0 for an unused expert): [E] float64."""
    return torch.where(stats.routed > 0, stats.reap_sum / stats.routed.clamp_min(1), torch.zeros_like(stats.routed))


def channel_scores(stats: RoutingStats, down_proj: torch.Tensor) -> torch.Tensor:
    """Wanda-sp score of every channel of every expert: ||x_j||_2 ||W_down[:, j]||_2, [E, I] float64.
    down_proj: the experts' dense [E, H, I]."""
    assert stats.channel_sq is not None, "channel statistics were not accumulated (expert_unit=channel)"
    return stats.channel_sq.sqrt() * down_proj.detach().double().norm(dim=1)


EXPERT_CRITERIA: dict[str, Callable[[RoutingStats], torch.Tensor]] = {"frequency": frequency, "reap": reap}


def expert_scores(name: str, stats: RoutingStats) -> torch.Tensor:
    """Score every expert of a layer with criterion ``name``: [E] float64, higher is kept first."""
    check_choice("supernet.expert_criterion", name, EXPERT_CRITERIA)
    return EXPERT_CRITERIA[name](stats)
