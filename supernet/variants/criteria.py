"""Local criteria: score every unit of a module; a module keeps its highest-scoring units.

Scores are per unit (GQA group or MLP channel), higher = more important. A unit's weights are the rows /
columns the adapter's plan assigns to it; the statistic-based criteria read the output projection
(o_proj / down_proj, W: [out, in]) and the ``ChannelStats`` of its input X: [tokens, in]; a unit owns
the input channels C(u) (head_dim columns per query head of a GQA group, or one MLP channel).

Registry ``CRITERIA`` (name -> function ``(adapter, module, kind, stats, *, damping, rounds, dtype) -> [units]``):
the math runs on the device of the module and its statistics, in ``dtype`` (``supernet.solve_dtype``:
float64 by default; float32 is the GPU's fast path, its error measured by ``bench.scale``); scores are
returned on the host.

- ``magnitude``: S_u = ||W_u||_2 over every weight the unit owns (Torch-Pruning's group L2).
- ``wanda_sp``: S_u = sum_{j in C(u)} sum_i |W_ij| ||X_j||_2 (structured Wanda as evaluated by FLAP,
  An et al. 2024, https://arxiv.org/abs/2312.11983; Wanda: Sun et al. 2023, https://arxiv.org/abs/2306.11695).
- ``flap``: S_u = sum_{j in C(u)} Var_t(X_j) ||W[:, j]||_2^2 (FLAP's fluctuation metric, eq. 5).
- ``obs``: greedy second-order group removal (OBS, Hassibi & Stork 1993; ZipLM, Kurtic et al. 2023,
  https://arxiv.org/abs/2302.04089; Týr-the-Pruner's local pruner). See :func:`obs`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from supernet.errors import check_choice
from supernet.variants.statistics import damp

if TYPE_CHECKING:
    from collections.abc import Callable

    from torch import nn

    from supernet.io.adapters.base import DecoderAdapter
    from supernet.variants.statistics import ChannelStats


def unit_weight_sq_norms(adapter: DecoderAdapter, module: nn.Module, kind: str) -> torch.Tensor:
    """Sum of squared weights each unit owns across the module's projections. [units]"""
    plan = adapter.plan(kind)
    units = adapter.units_total(kind)
    total = torch.zeros(units, dtype=torch.float64, device=next(module.parameters()).device)
    for proj in (p for p in plan if adapter.owns(p, kind)):
        weight = getattr(module, proj.name).weight.detach().double()
        per_row = weight.pow(2).sum(dim=1 if proj.side == "out" else 0)  # [rows or cols]
        total += adapter.unit_sums(proj, per_row, kind)  # [units], over every block of a fused projection
    return total.cpu()


def output_weight(adapter: DecoderAdapter, module: nn.Module, kind: str, dtype: torch.dtype = torch.float64):
    """The output projection's weight W in ``dtype``, on the module's device. [out, in]"""
    return getattr(module, adapter.output_projection(kind)).weight.detach().to(dtype)


def per_unit(adapter: DecoderAdapter, kind: str, per_channel: torch.Tensor) -> torch.Tensor:
    """Sum a per-input-channel score over each unit's channels. [in] -> [units]"""
    return per_channel.reshape(adapter.units_total(kind), -1).sum(dim=1)  # a unit's channels are contiguous


def _need(stats: ChannelStats | None, name: str, gram: bool = False) -> ChannelStats:
    if stats is None or (gram and stats.gram is None):
        raise ValueError(f"criterion {name!r} needs calibration statistics{' with the Gram matrix' if gram else ''}")
    return stats


def magnitude(
    adapter: DecoderAdapter, module: nn.Module, kind: str, stats: ChannelStats | None = None, **_: float
) -> torch.Tensor:
    """Group L2 magnitude (Torch-Pruning): S_u = ||W_u||_2 over all weights unit u owns. [units]"""
    return unit_weight_sq_norms(adapter, module, kind).sqrt()


def wanda_sp(
    adapter: DecoderAdapter, module: nn.Module, kind: str, stats: ChannelStats | None, **_: float
) -> torch.Tensor:
    """Structured Wanda: S_u = sum_{j in C(u)} sum_i |W_ij| * ||X_j||_2 on the output projection. [units]"""
    stats = _need(stats, "wanda_sp")
    weight = output_weight(adapter, module, kind)  # [out, in]
    return per_unit(adapter, kind, weight.abs().sum(dim=0) * stats.sq_norm.sqrt()).cpu()


def flap(adapter: DecoderAdapter, module: nn.Module, kind: str, stats: ChannelStats | None, **_: float) -> torch.Tensor:
    """FLAP fluctuation: S_u = sum_{j in C(u)} Var_tokens(X_j) * ||W[:, j]||_2^2. [units]"""
    stats = _need(stats, "flap")
    weight = output_weight(adapter, module, kind)  # [out, in]
    return per_unit(adapter, kind, stats.var * weight.pow(2).sum(dim=0)).cpu()


def damped_gram(gram: torch.Tensor, weight: torch.Tensor, damping: float) -> tuple[torch.Tensor, torch.Tensor]:
    """H damped by :func:`supernet.variants.statistics.damp` (in W's dtype, on its device), and W with the dead
    inputs' columns zeroed (SparseGPT: an input that never fires costs nothing to remove, so its weights must not
    count in a unit's loss). Returns (H, W). gram: [in, in], weight: [out, in]."""
    h, dead = damp(gram.detach().to(device=weight.device, dtype=weight.dtype), damping)
    w = weight.clone()
    w[:, dead] = 0.0
    return h, w


def spd_inverse(h: torch.Tensor) -> torch.Tensor:
    """H^-1 of a symmetric positive definite H through its Cholesky factor (a third of LU's work);
    a factorisation that fails (H not numerically positive definite) falls back to the general inverse."""
    factor, info = torch.linalg.cholesky_ex(h)
    return torch.cholesky_inverse(factor) if int(info) == 0 else torch.linalg.inv(h)


def spd_solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """A^-1 B for symmetric positive definite A ([..., n, n]; B: [..., n, k]) through Cholesky (potrf/potrs:
    half of LU's work). Batched LU is also unsafe here: torch 2.13's CPU build with MKL fails on batches of
    512 x 512 blocks with more than one thread ("Pivots given to lu_solve must all be greater or equal to
    1"; OBS on the 4-head GQA groups of a 1B model). A block that is not numerically positive definite
    falls back to LU, one block at a time."""
    factor, info = torch.linalg.cholesky_ex(a)
    if not bool((info != 0).any()):
        return torch.cholesky_solve(b, factor)
    if a.dim() == 2:
        return torch.linalg.solve(a, b)
    return torch.stack([torch.linalg.solve(x, y) for x, y in zip(a, b, strict=True)])


def obs_removal_order(weight: torch.Tensor, h: torch.Tensor, unit_size: int, rounds: int) -> torch.Tensor:
    """Order in which OBS removes groups of ``unit_size`` consecutive columns, greedily in rounds.

    With G = H^-1 restricted to the remaining columns, removing a group Q costs (OBS, group form)
        eps_Q = sum_i W_iQ (G_QQ)^-1 W_iQ^T = trace(W_Q (G_QQ)^-1 W_Q^T)
    and the optimal update of the rest R is W_R -= W_Q (G_QQ)^-1 G_QR, G_RR -= G_RQ (G_QQ)^-1 G_QR.
    Each round removes the ceil(units / rounds) groups cheapest at the round's start, first the cheapest,
    with one joint update (the same as removing them one after the other: OBS updates compose), and
    keeps W and G on the remaining columns only, so a round costs O(remaining^2 * removed) in matrix
    products (Týr removes MLP channels in 16 rounds; one column at a time would be O(in^3) in rank-1 steps).
    weight: [out, in], h: damped [in, in], on one device. Returns unit indices, first removed first. [units]
    """
    return removal_order_from_inverse(weight.clone(), spd_inverse(h), unit_size, rounds)


def removal_order_from_inverse(w: torch.Tensor, g: torch.Tensor, unit_size: int, rounds: int) -> torch.Tensor:
    """:func:`obs_removal_order` given G = H^-1; ``w`` and ``g`` are consumed (updated in place, then replaced by
    their rows and columns of the remaining units), so memory holds one G and the round's update, not H beside it.
    w: [out, in], g: [in, in]. Returns unit indices, first removed first. [units]"""
    units, device = w.shape[1] // unit_size, w.device
    alive = torch.arange(units, device=device)  # the units whose columns w and g hold, in order
    order: list[int] = []
    per_round = math.ceil(units / max(1, rounds))
    while alive.numel():
        n = alive.numel()
        cols = torch.arange(n * unit_size, device=device).reshape(n, unit_size)  # [alive, unit_size] of w and g
        g_qq = g[cols[:, :, None], cols[:, None, :]]  # [alive, size, size]
        w_q = w[:, cols].permute(1, 0, 2)  # [alive, out, size]
        sol = spd_solve(g_qq, w_q.transpose(1, 2))  # [alive, size, out] = G_QQ^-1 W_Q^T
        cost = (w_q.transpose(1, 2) * sol).sum(dim=(1, 2))  # trace(W_Q G_QQ^-1 W_Q^T)
        picked = torch.argsort(cost, stable=True)[:per_round]  # positions among the alive units
        order.extend(alive[picked].tolist())
        kept = torch.ones(n, dtype=torch.bool, device=device)
        kept[picked] = False
        q, r = cols[picked].flatten(), cols[kept].flatten()
        if r.numel():
            g_qq_inv = torch.linalg.inv(g[q][:, q])  # [|Q|, |Q|]
            g_qr = g[q][:, r]  # [|Q|, |R|]
            update = w[:, q] @ g_qq_inv @ g_qr  # [out, |Q|] @ [|Q|, |Q|] @ [|Q|, |R|] -> [out, |R|]
            w = w[:, r]  # [out, |R|]
            w -= update
            g = g[r[:, None], r]  # [|R|, |R|] (one copy; the old G goes)
            g -= g_qr.T @ g_qq_inv @ g_qr  # G symmetric
            del update
        alive = alive[kept]
    return torch.tensor(order)


def obs(
    adapter: DecoderAdapter,
    module: nn.Module,
    kind: str,
    stats: ChannelStats | None,
    *,
    damping: float = 0.01,
    rounds: int = 16,
    dtype: torch.dtype = torch.float64,
    **_: float,
) -> torch.Tensor:
    """Second-order group removal on the damped H (see :func:`obs_removal_order`) as scores:
    S_u = position of u in the removal order (removed first = 0). Attention removes one GQA group per
    round (groups are few); the MLP removes its channels in ``rounds`` rounds (Týr: 16). [units]"""
    stats = _need(stats, "obs", gram=True)
    h, w = damped_gram(stats.gram, output_weight(adapter, module, kind, dtype), damping)
    g = spd_inverse(h)
    del h  # memory: G alone through the rounds (an 8B MLP's H is 1.6 GB in float64)
    units = adapter.units_total(kind)
    order = removal_order_from_inverse(w, g, w.shape[1] // units, units if kind == "attn" else rounds)
    scores = torch.empty(units, dtype=torch.float64)
    scores[order.cpu()] = torch.arange(units, dtype=torch.float64)
    return scores


CRITERIA: dict[str, Callable[..., torch.Tensor]] = {
    "magnitude": magnitude,
    "wanda_sp": wanda_sp,
    "flap": flap,
    "obs": obs,
}
NEEDS_GRAM = ("obs",)


def get_criterion(name: str) -> Callable[..., torch.Tensor]:
    check_choice("supernet.criterion", name, CRITERIA)
    return CRITERIA[name]


def ranking(scores: torch.Tensor, groups: int = 1) -> torch.Tensor:
    """Units from most to least important (stable, so ties keep index order). [units]

    With ``groups`` > 1 (query heads, ``groups`` GQA groups of consecutive units) every prefix of
    ``k * groups`` units holds the k best of each group: the best head of every group first (in score
    order), then the second best of every group, and so on."""
    order = torch.argsort(scores, descending=True, stable=True)
    if groups == 1:
        return order
    size = len(scores) // groups
    rank_in_group = torch.empty_like(order)
    for g in range(groups):
        members = order[order // size == g]  # group g's units, best first
        rank_in_group[members] = torch.arange(size)
    tier = rank_in_group[order]  # [units] in score order
    return order[torch.argsort(tier, stable=True)]  # by tier, score order within a tier
