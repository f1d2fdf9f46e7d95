"""The level grid: for every module, the widths a search may give it, in steps of equal cost.

Level ``l`` of a module keeps ``l * step`` units (level 0 removes the sub-block: depth pruning).
Every attention step costs ``step_attn * attn_unit_cost`` and every MLP step ``step_mlp * mlp_unit_cost``,
where the cost is what the budget counts (parameters by default, FLOPs: supernet/budget.py); with a
joint budget the two are equal, so moving any module up one level and any other down one keeps the
cost exactly (Týr-the-Pruner, EvoPress). With separate budgets, attention and MLP each keep their own
level sum, which keeps the cost exactly whatever the step costs.

The grid is centred on the target: every module may range ``radius`` levels around the level of the
uniform allocation at ``keep``, clipped to [0, total // step].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from supernet.allocation import Allocation, LayerAllocation
from supernet.errors import UsageError

KINDS = ("attn", "mlp")


@dataclass(frozen=True)
class ModuleGrid:
    layer: int
    kind: str  # "attn" | "mlp"
    step: int  # units per level
    total: int  # units of the dense module
    lo: int  # lowest level allowed
    hi: int  # highest level allowed (hi * step <= total)

    def units(self, level: int) -> int:
        assert self.lo <= level <= self.hi, f"level {level} outside [{self.lo}, {self.hi}] of {self}"
        return level * self.step


@dataclass(frozen=True)
class LevelGrid:
    """All modules' grids, ordered (layer 0 attn, layer 0 mlp, layer 1 attn, ...), and the budget."""

    modules: tuple[ModuleGrid, ...]
    unit_params: dict[str, int]  # parameters of one unit, per kind
    joint: bool  # one budget over attention and MLP (equal step costs), or one per kind
    target: tuple[int, ...]  # the uniform allocation's levels: the budget's reference point
    unit_cost: dict[str, int] | None = None  # what the budget counts per unit, per kind; None = unit_params

    @property
    def costs(self) -> dict[str, int]:
        return self.unit_params if self.unit_cost is None else self.unit_cost

    def step(self, kind: str) -> int:
        return next(m.step for m in self.modules if m.kind == kind)

    def cost(self, levels: Sequence[int]) -> int:
        """What the budget counts (parameters or FLOPs) for an allocation given as levels."""
        return sum(m.units(lv) * self.costs[m.kind] for m, lv in zip(self.modules, levels, strict=True))

    def step_params(self, kind: str) -> int:
        return self.step(kind) * self.unit_params[kind]

    def params(self, levels: Sequence[int]) -> int:
        """Prunable parameters kept by an allocation given as levels."""
        return sum(m.units(lv) * self.unit_params[m.kind] for m, lv in zip(self.modules, levels, strict=True))

    def budget_sums(self, levels: Sequence[int]) -> tuple[int, ...]:
        """What must stay equal to the target's: the level sum, overall (joint) or per kind."""
        if self.joint:
            return (sum(levels),)
        return tuple(sum(lv for m, lv in zip(self.modules, levels, strict=True) if m.kind == k) for k in KINDS)

    def on_budget(self, levels: Sequence[int]) -> bool:
        return self.in_bounds(levels) and self.budget_sums(levels) == self.budget_sums(self.target)

    def in_bounds(self, levels: Sequence[int]) -> bool:
        return len(levels) == len(self.modules) and all(
            m.lo <= lv <= m.hi for m, lv in zip(self.modules, levels, strict=True)
        )

    def allocation(self, levels: Sequence[int]) -> Allocation:
        by_layer: dict[int, dict[str, ModuleGrid | int]] = {}
        for m, lv in zip(self.modules, levels, strict=True):
            by_layer.setdefault(m.layer, {})[m.kind] = m.units(lv)
            by_layer[m.layer][f"{m.kind}_total"] = m.total
        return Allocation(
            tuple(
                LayerAllocation(e["attn"], e["attn_total"], e["mlp"], e["mlp_total"])
                for _, e in sorted(by_layer.items())
            )
        )

    def levels_of(self, allocation: Allocation) -> list[int]:
        """Inverse of ``allocation`` (units must be multiples of each module's step)."""
        levels = []
        for m in self.modules:
            units = allocation.units(m.layer, m.kind)
            if units % m.step:
                raise UsageError(f"layer {m.layer} {m.kind} keeps {units} units, not a multiple of {m.step}")
            levels.append(units // m.step)
        return levels


def make_grid(
    *,
    num_layers: int,
    totals: dict[str, int],
    unit_params: dict[str, int],
    keep: float,
    steps: dict[str, int],
    radius: int,
    joint: bool,
    unit_cost: dict[str, int] | None = None,
) -> LevelGrid:
    """Build the grid around the uniform allocation at ``keep``.

    Args:
        totals: units of a dense module per kind (GQA groups, MLP channels).
        unit_params: parameters per unit per kind.
        keep: fraction of the prunable cost to keep, in (0, 1].
        steps: units per level per kind; with ``joint`` the MLP step is derived so both costs match.
        radius: levels each module may move away from the target (Týr: 4, i.e. 9 levels).
        joint: one budget over attention and MLP.
        unit_cost: what the budget counts per unit per kind (FLOPs); None = ``unit_params``.
    """
    if not 0.0 < keep <= 1.0:
        raise UsageError(f"budget.keep={keep} is outside (0, 1]: give the fraction of parameters to keep")
    steps = dict(steps)
    costs = dict(unit_params if unit_cost is None else unit_cost)
    if joint:
        cost = steps["attn"] * costs["attn"]
        if cost % costs["mlp"]:
            raise UsageError(
                f"an attention step (cost {cost}) is no whole number of MLP channels "
                f"(cost {costs['mlp']} each): set supernet.joint_budget=false"
            )
        steps["mlp"] = cost // costs["mlp"]
    top = {k: totals[k] // steps[k] for k in KINDS}
    if min(top.values()) < 1:
        raise UsageError(f"a level step {steps} is wider than a module {totals}: use a smaller step")
    sums = _target_sums(num_layers, totals, costs, keep, steps, top)
    per_layer = {k: _spread(sums[k], num_layers) for k in KINDS}
    modules, target = [], []
    for layer in range(num_layers):
        for kind in KINDS:
            c = per_layer[kind][layer]
            modules.append(
                ModuleGrid(layer, kind, steps[kind], totals[kind], max(0, c - radius), min(top[kind], c + radius))
            )
            target.append(c)
    return LevelGrid(tuple(modules), dict(unit_params), joint, tuple(target), None if unit_cost is None else costs)


def refine_grid(grid: LevelGrid, levels: Sequence[int], *, radius: int, min_steps: dict[str, int]) -> LevelGrid:
    """Týr-the-Pruner's coarse-to-fine step: a grid centred on ``levels`` with half the step.

    Each kind's step is halved when the half is a whole multiple of ``min_steps[kind]`` (one GQA group,
    the channel quantum), else kept. The new centre keeps exactly the units of ``levels`` (the new step
    divides the old one), so the budget is unchanged; the budget stays joint only if the new step costs
    are still equal (an attention step of one group cannot halve while the MLP's can), else each kind
    keeps its own level sum. Every module may move ``radius`` new levels around its centre.
    """
    assert grid.in_bounds(levels), f"levels {list(levels)} are outside the grid"
    steps = {}
    for kind in KINDS:
        step, half = grid.step(kind), grid.step(kind) // 2
        steps[kind] = half if step % 2 == 0 and half >= min_steps[kind] and half % min_steps[kind] == 0 else step
    joint = grid.joint and steps["attn"] * grid.costs["attn"] == steps["mlp"] * grid.costs["mlp"]
    modules, target = [], []
    for m, lv in zip(grid.modules, levels, strict=True):
        step = steps[m.kind]
        centre = m.units(lv) // step
        modules.append(ModuleGrid(m.layer, m.kind, step, m.total, max(0, centre - radius),
                                  min(m.total // step, centre + radius)))  # fmt: skip
        target.append(centre)
    refined = LevelGrid(tuple(modules), dict(grid.unit_params), joint, tuple(target), grid.unit_cost)
    assert refined.cost(target) == grid.cost(levels), "refining changed the allocation's cost"
    return refined


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one, the extras evenly spaced."""
    base, extra = divmod(total, parts)
    return [base + ((i + 1) * extra) // parts - (i * extra) // parts for i in range(parts)]


def _target_sums(
    num_layers: int,
    totals: dict[str, int],
    unit_params: dict[str, int],
    keep: float,
    steps: dict[str, int],
    top: dict[str, int],
) -> dict[str, int]:
    """Level sums per kind of the most uniform allocation at ``keep``.

    Attention keeps round(keep * groups) per layer on average; the MLP takes the rest of the budget,
    so the total is within half an MLP step of ``keep``. Refuses a budget no allocation reaches.
    """
    prunable = num_layers * sum(totals[k] * unit_params[k] for k in KINDS)
    cost = {k: steps[k] * unit_params[k] for k in KINDS}
    attn = min(num_layers * top["attn"], round(keep * num_layers * totals["attn"] / steps["attn"]))
    mlp = round((keep * prunable - attn * cost["attn"]) / cost["mlp"])
    if not 0 <= mlp <= num_layers * top["mlp"] or attn + mlp == 0:
        smallest = math.ceil(1000 * min(cost.values()) / prunable) / 1000
        raise UsageError(
            f"budget.keep={keep} cannot be reached on this level grid (steps {steps}): "
            f"use keep >= {smallest}, or smaller level steps"
        )
    return {"attn": attn, "mlp": mlp}


def repair(grid: LevelGrid, levels: Sequence[int], priority: Sequence[float] | None = None) -> list[int]:
    """Move ``levels`` onto the grid's budget, one level at a time, cheapest harm first (deterministic).

    Levels are first clipped into each module's [lo, hi]. While a budget sum (overall, or per kind with
    separate budgets) is above the target's, the module with the lowest ``priority`` that can go down
    loses a level; while below, the module with the highest priority that can go up gains one. Ties go
    to the module furthest above (resp. below) its target level, then to the lower index.

    Args:
        priority: per module (grid order), higher = more important; None = all equal.
    """
    n = len(grid.modules)
    assert len(levels) == n, f"{len(levels)} levels for {n} modules"
    priority = [0.0] * n if priority is None else list(priority)
    out = [min(max(int(lv), m.lo), m.hi) for m, lv in zip(grid.modules, levels, strict=True)]
    groups = [list(range(n))] if grid.joint else [[i for i, m in enumerate(grid.modules) if m.kind == k] for k in KINDS]
    for members, goal in zip(groups, grid.budget_sums(grid.target), strict=True):
        while (current := sum(out[i] for i in members)) != goal:
            if current > goal:
                movable = [i for i in members if out[i] > grid.modules[i].lo]
                key = lambda i: (priority[i], grid.target[i] - out[i], i)  # noqa: E731
                delta = -1
            else:
                movable = [i for i in members if out[i] < grid.modules[i].hi]
                key = lambda i: (-priority[i], out[i] - grid.target[i], i)  # noqa: E731
                delta = 1
            assert movable, f"level sum {current} cannot reach {goal} within the grid's bounds"
            out[min(movable, key=key)] += delta
    assert grid.on_budget(out), "repair left the allocation off budget"
    return out
