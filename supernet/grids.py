"""Building level grids (:mod:`supernet.levels`): around the most uniform allocation that meets a budget
(:func:`make_grid`), and Týr-the-Pruner's coarse-to-fine refinement around an allocation (:func:`refine_grid`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from supernet.errors import UsageError
from supernet.levels import EXPERTS, KINDS, LevelGrid, ModuleGrid, repair


def strides(totals: dict[str, int], steps: dict[str, int], fraction: float) -> dict[str, int]:
    """Levels per coarse level: ``fraction`` of each module, at least one step."""
    return {k: max(1, round(fraction * totals[k] / steps[k])) for k in totals}


def make_grid(
    *,
    num_layers: int,
    totals: dict[str, int],
    unit_params: dict[str, int],
    keep: float,
    steps: dict[str, int],
    radius: int,
    joint: bool = True,
    fraction: float = 0.125,
    unit_cost: dict[str, int] | None = None,
    base_params: dict[str, int] | None = None,
    base_cost: dict[str, int] | None = None,
    floors: dict[str, int] | None = None,
    moe: dict | None = None,
) -> LevelGrid:
    """Build the grid around the most uniform allocation at ``keep``.

    Args:
        totals: units of a dense module per kind, in a layer's module order (GQA groups, MLP channels; a
            mixture's expert count, Qwen2-MoE's shared expert channels). Kinds beyond attention, MLP and the
            expert count are additive modules centred on ``keep`` of their units.
        unit_params: parameters per unit per kind.
        keep: fraction of the prunable cost to keep, in (0, 1].
        steps: units per level per kind (1 GQA group, ``channel_quantum`` channels).
        radius: coarse levels each module may move away from its target (Týr: 4, i.e. 9 levels).
        joint: one budget over attention and MLP.
        fraction: a coarse level's share of its module (Týr: 1/8).
        unit_cost: what the budget counts per unit per kind (FLOPs); None = ``unit_params``.
        base_params, base_cost: a module's parameters (cost) while it keeps any unit; None = 0.
        floors: the fewest units a module of each kind keeps (a MoE layer's top-k experts); None = 0.
        moe: a mixture of experts (``LevelGrid.moe``); with ``unit="both"`` every layer also has an
            ``experts`` module coupled to its ``mlp`` (the width of each expert). The uniform centre
            keeps ``keep`` of the experts (all of them when ``active_top_k`` is set: experts then cost
            only their router rows) and the widths take the rest of the budget.
    """
    if not 0.0 < keep <= 1.0:
        raise UsageError(f"budget.keep={keep} is outside (0, 1]: give the fraction of parameters to keep")
    kinds = tuple(totals)
    assert kinds[: len(KINDS)] == KINDS and (EXPERTS in kinds) == bool(moe and moe["unit"] == "both"), kinds
    costs = dict(unit_params if unit_cost is None else unit_cost)
    top = {k: -(-totals[k] // steps[k]) for k in kinds}
    stride = strides({k: totals[k] for k in kinds}, steps, fraction)
    least = {k: -(-(floors or {}).get(k, 0) // steps[k]) for k in kinds}
    extra = dict(unit_cost=unit_cost and costs, base_params=base_params, base_cost=base_cost, moe=moe)

    def grid_around(centre: dict[str, list[int]], reach: int, budget: int) -> LevelGrid:
        modules = []
        for layer in range(num_layers):
            first = len(modules)
            for kind in kinds:
                c = max(centre[kind][layer], least[kind])
                lo, hi = max(least[kind], c - reach * stride[kind]), min(top[kind], c + reach * stride[kind])
                pair = {"mlp": EXPERTS, EXPERTS: "mlp"}.get(kind)  # a layer's expert count and width cost together
                partner = first + kinds.index(pair) if pair in kinds else -1
                modules.append(ModuleGrid(layer, kind, steps[kind], totals[kind], lo, hi, stride[kind], c,
                                          least[kind], partner))  # fmt: skip
        return LevelGrid(tuple(modules), dict(unit_params), joint, tuple(m.centre for m in modules), budget, **extra)

    dense_grid = grid_around({k: [top[k]] * num_layers for k in kinds}, 0, 0)
    dense = dense_grid.dense_cost()
    budget = math.floor(keep * dense + 1e-9 * dense)  # float noise must not cost a unit at keep = 1
    # attention keeps round(keep * groups) on average (and the additive kinds keep of theirs); the MLP takes the
    # rest of the budget, spread evenly
    attn = min(num_layers * top["attn"], round(keep * num_layers * totals["attn"] / steps["attn"]))
    centre = {"attn": _spread(attn, num_layers)}
    for kind in kinds[len(KINDS) :]:  # additive kinds (a shared expert) keep ``keep`` of their units
        if kind != EXPERTS:
            centre[kind] = _spread(round(keep * num_layers * totals[kind] / steps[kind]), num_layers)
    placed = sum(  # what the modules placed before the MLP cost: units, and a base while any is kept
        min(lv * steps[kind], totals[kind]) * costs[kind] + dense_grid.bases.get(kind, 0) * (lv > 0)
        for kind, levels in centre.items()
        for lv in levels
    )
    step_cost = steps["mlp"] * costs["mlp"]
    if EXPERTS in kinds:  # the experts first (a uniform count), their width with what is left
        uniform = min(top[EXPERTS], max(least[EXPERTS], round(keep * totals[EXPERTS])))
        experts = top[EXPERTS] if moe.get("active_top_k") else uniform
        centre[EXPERTS] = [experts] * num_layers
        placed += num_layers * experts * costs[EXPERTS]
        step_cost *= dense_grid.copies(experts)
    mlp = max(0, min(num_layers * top["mlp"], (budget - placed) // step_cost))
    centre["mlp"] = _spread(mlp, num_layers)
    grid = grid_around(centre, radius, budget)
    target = repair(grid, grid.target, strict=False)
    if target is None or grid.cost(target) == 0:
        smallest = math.ceil(1000 * max(grid.step_cost(k) for k in KINDS) / dense) / 1000
        raise UsageError(
            f"budget.keep={keep} cannot be reached on this level grid (steps {steps}): "
            f"use keep >= {smallest}, or smaller level steps"
        )
    return dataclasses.replace(grid, target=tuple(target))


def refine_grid(grid: LevelGrid, levels: Sequence[int], *, radius: int) -> LevelGrid:
    """Týr-the-Pruner's coarse-to-fine step: a grid centred on ``levels`` with half the coarse level.

    Levels keep their meaning (the step is unchanged), so the centre keeps exactly the units of
    ``levels`` and the budget is the same; every module may move ``radius`` new coarse levels
    (``stride`` halved, at least one step) around it.
    """
    assert grid.on_budget(levels), f"levels {list(levels)} are not an allocation on the grid's budget"
    modules = []
    for m, lv in zip(grid.modules, levels, strict=True):
        stride = max(1, m.stride // 2)
        reach = radius * stride
        modules.append(dataclasses.replace(m, lo=max(m.least, lv - reach), hi=min(m.top, lv + reach), stride=stride,
                                           centre=lv))  # fmt: skip
    return dataclasses.replace(grid, modules=tuple(modules), target=tuple(levels))


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one, the extras evenly spaced."""
    base, extra = divmod(total, parts)
    return [base + ((i + 1) * extra) // parts - (i * extra) // parts for i in range(parts)]
