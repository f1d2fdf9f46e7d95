"""The level grid: for every module, the widths a search may give it, and the budget they must meet.

A module's **level** ``l`` keeps ``min(l * step, total)`` units: ``step`` is the finest change of
width (one GQA group; ``channel_quantum`` MLP channels), so level 0 removes the sub-block (depth
pruning) and the top level ``ceil(total / step)`` is the dense module. A **coarse level** is
``stride`` levels, a fixed fraction of the module (Týr-the-Pruner: 12.5%); mutations move modules by
coarse levels, compensation is fitted at the coarse widths (``ModuleGrid.anchors``), and every module
may range ``radius`` coarse levels around its centre (Týr: 4, i.e. 9 levels covering +-50%).

**The budget rule** (README.md, Design) holds for every layout, whatever a GQA group costs in MLP channels:
the cost of an allocation (parameters or FLOPs, ``supernet/budget.py``) is never above the budget
and below it by less than one MLP step's cost. A move of attention is paid for in MLP quanta
(:func:`settle`), so attention and MLP share one budget even when a group is no whole number of
channels (Llama-3.1-8B: 426.7). With ``joint=False`` attention keeps its target's group count and the
MLP meets the rest of the budget.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from supernet.allocation import Allocation, LayerAllocation
from supernet.errors import UsageError

KINDS = ("attn", "mlp")


@dataclass(frozen=True)
class ModuleGrid:
    layer: int
    kind: str  # "attn" | "mlp"
    step: int  # units per level: the finest change of width
    total: int  # units of the dense module
    lo: int  # lowest level allowed
    hi: int  # highest level allowed (<= top)
    stride: int = 1  # levels per coarse level: a mutation's move, the spacing of compensated widths
    centre: int = 0  # the level the coarse levels are counted from (the target, or the best so far)
    least: int = 0  # the lowest level any grid may give it (a MoE layer's top-k experts; 0: removable)

    @property
    def top(self) -> int:
        """The dense module's level."""
        return -(-self.total // self.step)

    def units(self, level: int) -> int:
        assert self.lo <= level <= self.hi, f"level {level} outside [{self.lo}, {self.hi}] of {self}"
        return min(level * self.step, self.total)

    def anchors(self) -> list[int]:
        """Levels whose compensation is fitted: the coarse levels ``centre + k * stride`` and both ends."""
        first = self.lo + (self.centre - self.lo) % self.stride
        return sorted({self.lo, self.hi, *range(first, self.hi + 1, self.stride)})

    def anchor_above(self, level: int) -> int:
        """The lowest anchor at or above ``level`` (its compensation serves ``level``)."""
        return next(a for a in self.anchors() if a >= level)


@dataclass(frozen=True)
class LevelGrid:
    """All modules' grids, ordered (layer 0 attn, layer 0 mlp, layer 1 attn, ...), and the budget."""

    modules: tuple[ModuleGrid, ...]
    unit_params: dict[str, int]  # parameters of one unit, per kind
    joint: bool  # one budget over attention and MLP, or attention's group count fixed and the MLP the rest
    target: tuple[int, ...]  # the uniform allocation's levels (refined grids: the best so far)
    budget: int  # the most the allocation may cost
    unit_cost: dict[str, int] | None = None  # what the budget counts per unit, per kind; None = unit_params
    base_params: dict[str, int] | None = None  # a module's parameters while it keeps any unit (K/V of head units)
    base_cost: dict[str, int] | None = None  # the same in what the budget counts; None = base_params
    # a mixture of experts: {"unit": "expert" | "channel", "experts": per layer, "width": an expert's channels}
    moe: dict | None = None

    @property
    def costs(self) -> dict[str, int]:
        return self.unit_params if self.unit_cost is None else self.unit_cost

    @property
    def bases(self) -> dict[str, int]:
        base = self.base_params if self.base_cost is None else self.base_cost
        return base or dict.fromkeys(KINDS, 0)

    def step(self, kind: str) -> int:
        return next(m.step for m in self.modules if m.kind == kind)

    def stride(self, kind: str) -> int:
        return max(m.stride for m in self.modules if m.kind == kind)

    def step_cost(self, kind: str) -> int:
        return self.step(kind) * self.costs[kind]

    def module_cost(self, i: int, level: int) -> int:
        """What module ``i`` costs at ``level``: its units, plus its base while it keeps any."""
        m = self.modules[i]
        units = m.units(level)
        return units * self.costs[m.kind] + (self.bases[m.kind] if units else 0)

    def cost(self, levels: Sequence[int]) -> int:
        """What the budget counts (parameters or FLOPs) for an allocation given as levels."""
        return sum(self.module_cost(i, lv) for i, lv in enumerate(levels))

    def params(self, levels: Sequence[int]) -> int:
        """Prunable parameters kept by an allocation given as levels (its cost when parameters are counted)."""
        return dataclasses.replace(self, unit_cost=None, base_cost=None).cost(levels)

    def budget_groups(self) -> list[tuple[list[int], int, int]]:
        """(module indices, budget, slack) of each budget: cost in (budget - slack, budget].

        Joint: one over every module, slack one MLP step's cost. Separate: attention at its target's
        cost, the MLP with the rest."""
        everything = list(range(len(self.modules)))
        if self.joint:
            return [(everything, self.budget, self.step_cost("mlp"))]
        attn = [i for i in everything if self.modules[i].kind == "attn"]
        mlp = [i for i in everything if self.modules[i].kind == "mlp"]
        attn_budget = sum(self.module_cost(i, self.target[i]) for i in attn)
        return [(attn, attn_budget, self.step_cost("attn")), (mlp, self.budget - attn_budget, self.step_cost("mlp"))]

    def group_of(self, i: int) -> list[int]:
        return next(members for members, _, _ in self.budget_groups() if i in members)

    def on_budget(self, levels: Sequence[int]) -> bool:
        if not self.in_bounds(levels):
            return False
        for members, budget, slack in self.budget_groups():
            cost = sum(self.module_cost(i, levels[i]) for i in members)
            if not budget - slack < cost <= budget:
                return False
        return True

    def in_bounds(self, levels: Sequence[int]) -> bool:
        return len(levels) == len(self.modules) and all(
            m.lo <= lv <= m.hi for m, lv in zip(self.modules, levels, strict=True)
        )

    def allocation(self, levels: Sequence[int]) -> Allocation:
        by_layer: dict[int, dict[str, int]] = {}
        for m, lv in zip(self.modules, levels, strict=True):
            by_layer.setdefault(m.layer, {})[m.kind] = m.units(lv)
            by_layer[m.layer][f"{m.kind}_total"] = m.total
        if self.moe and self.moe["unit"] == "expert":  # the MLP's units are experts, each at its full width
            width = self.moe["width"]
            return Allocation(tuple(LayerAllocation(e["attn"], e["attn_total"], width, width, e["mlp"], e["mlp_total"])
                                    for _, e in sorted(by_layer.items())), mlp_unit="expert")  # fmt: skip
        if self.moe:  # channels of every expert: all experts stay while any channel does
            experts = self.moe["experts"]
            return Allocation(tuple(LayerAllocation(e["attn"], e["attn_total"], e["mlp"], e["mlp_total"],
                                                    experts if e["mlp"] else 0, experts)
                                    for _, e in sorted(by_layer.items())))  # fmt: skip
        return Allocation(
            tuple(
                LayerAllocation(e["attn"], e["attn_total"], e["mlp"], e["mlp_total"])
                for _, e in sorted(by_layer.items())
            )
        )

    def levels_of(self, allocation: Allocation) -> list[int]:
        """Inverse of ``allocation`` (units must be multiples of each module's step, or the whole module)."""
        levels = []
        for m in self.modules:
            units = allocation.units(m.layer, m.kind)
            if units == m.total:
                levels.append(m.top)
                continue
            if units % m.step:
                raise UsageError(f"layer {m.layer} {m.kind} keeps {units} units, not a multiple of {m.step}")
            levels.append(units // m.step)
        return levels


def strides(totals: dict[str, int], steps: dict[str, int], fraction: float) -> dict[str, int]:
    """Levels per coarse level: ``fraction`` of each module, at least one step."""
    return {k: max(1, round(fraction * totals[k] / steps[k])) for k in KINDS}


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
) -> LevelGrid:
    """Build the grid around the most uniform allocation at ``keep``.

    Args:
        totals: units of a dense module per kind (GQA groups, MLP channels).
        unit_params: parameters per unit per kind.
        keep: fraction of the prunable cost to keep, in (0, 1].
        steps: units per level per kind (1 GQA group, ``channel_quantum`` channels).
        radius: coarse levels each module may move away from its target (Týr: 4, i.e. 9 levels).
        joint: one budget over attention and MLP.
        fraction: a coarse level's share of its module (Týr: 1/8).
        unit_cost: what the budget counts per unit per kind (FLOPs); None = ``unit_params``.
        base_params, base_cost: a module's parameters (cost) while it keeps any unit; None = 0.
        floors: the fewest units a module of each kind keeps (a MoE layer's top-k experts); None = 0.
    """
    if not 0.0 < keep <= 1.0:
        raise UsageError(f"budget.keep={keep} is outside (0, 1]: give the fraction of parameters to keep")
    costs = dict(unit_params if unit_cost is None else unit_cost)
    bases = dict((base_params if base_cost is None else base_cost) or dict.fromkeys(KINDS, 0))
    dense = num_layers * sum(totals[k] * costs[k] + bases[k] for k in KINDS)
    budget = math.floor(keep * dense + 1e-9 * dense)  # float noise must not cost a unit at keep = 1
    top = {k: -(-totals[k] // steps[k]) for k in KINDS}
    stride = strides(totals, steps, fraction)
    # attention keeps round(keep * groups) on average; the MLP takes the rest of the budget, spread evenly
    attn = min(num_layers * top["attn"], round(keep * num_layers * totals["attn"] / steps["attn"]))
    attn_levels = _spread(attn, num_layers)
    attn_cost = sum(min(lv * steps["attn"], totals["attn"]) * costs["attn"] + bases["attn"] * (lv > 0)
                    for lv in attn_levels)  # fmt: skip
    mlp = max(0, min(num_layers * top["mlp"], (budget - attn_cost) // (steps["mlp"] * costs["mlp"])))
    centre = {"attn": attn_levels, "mlp": _spread(mlp, num_layers)}
    least = {k: -(-(floors or {}).get(k, 0) // steps[k]) for k in KINDS}
    modules = []
    for layer in range(num_layers):
        for kind in KINDS:
            c, reach = max(centre[kind][layer], least[kind]), radius * stride[kind]
            lo, hi = max(least[kind], c - reach), min(top[kind], c + reach)
            modules.append(ModuleGrid(layer, kind, steps[kind], totals[kind], lo, hi, stride[kind], c, least[kind]))
    draft = [m.centre for m in modules]
    extra = dict(unit_cost=unit_cost and costs, base_params=base_params, base_cost=base_cost)
    grid = LevelGrid(tuple(modules), dict(unit_params), joint, tuple(draft), budget, **extra)
    target = repair(grid, draft, strict=False)
    if target is None or grid.cost(target) == 0:
        smallest = math.ceil(1000 * max(grid.step_cost(k) for k in KINDS) / dense) / 1000
        raise UsageError(
            f"budget.keep={keep} cannot be reached on this level grid (steps {steps}): "
            f"use keep >= {smallest}, or smaller level steps"
        )
    return LevelGrid(tuple(modules), dict(unit_params), joint, tuple(target), budget, **extra)


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
        modules.append(ModuleGrid(m.layer, m.kind, m.step, m.total, max(m.least, lv - radius * stride),
                                  min(m.top, lv + radius * stride), stride, lv, m.least))  # fmt: skip
    return dataclasses.replace(grid, modules=tuple(modules), target=tuple(levels))


def _spread(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` integers differing by at most one, the extras evenly spaced."""
    base, extra = divmod(total, parts)
    return [base + ((i + 1) * extra) // parts - (i * extra) // parts for i in range(parts)]


def _gain(grid: LevelGrid, i: int, level: int) -> int:
    """What one more level of module ``i`` costs."""
    return grid.module_cost(i, level + 1) - grid.module_cost(i, level)


def settle(grid: LevelGrid, levels: list[int], order: Sequence[int]) -> bool:
    """Bring each budget's cost into its window by moving the modules of ``order``, first ones first.

    While a budget is exceeded, the first module of ``order`` in it that can go down loses a level; then
    while the next level of one of them still fits, the first such gains one. Moves are a coarse level
    at a time while that fits the gap, then single steps. Returns whether every budget is met (in place).
    """
    for members, budget, slack in grid.budget_groups():
        movers = [i for i in order if i in members]
        cost = sum(grid.module_cost(i, levels[i]) for i in members)
        while cost > budget:
            i = next((i for i in movers if levels[i] > grid.modules[i].lo), None)
            if i is None:
                return False
            m = grid.modules[i]
            down = levels[i] - m.lo
            one = grid.module_cost(i, levels[i]) - grid.module_cost(i, levels[i] - 1)
            moves = max(1, min(m.stride, down, (cost - budget) // one))
            cost -= grid.module_cost(i, levels[i]) - grid.module_cost(i, levels[i] - moves)
            levels[i] -= moves
        for i in movers:
            m = grid.modules[i]
            while levels[i] < m.hi and cost + (gain := _gain(grid, i, levels[i])) <= budget:
                moves = max(1, min(m.stride, m.hi - levels[i], (budget - cost) // max(gain, 1)))
                cost += grid.module_cost(i, levels[i] + moves) - grid.module_cost(i, levels[i])
                levels[i] += moves
        if cost <= budget - slack:
            return False
    return True


def repair(
    grid: LevelGrid, levels: Sequence[int], priority: Sequence[float] | None = None, *, strict: bool = True
) -> list[int] | None:
    """Move ``levels`` onto the grid's budget, cheapest harm first (deterministic).

    Levels are first clipped into each module's [lo, hi]. While over budget, the module with the lowest
    ``priority`` that can go down loses; then while under, the module with the highest priority whose
    next level fits gains (:func:`settle`). Ties go to the module furthest above (resp. below) its
    target level, then to the lower index.

    Args:
        priority: per module (grid order), higher = more important; None = all equal.
        strict: assert the result is on budget; else return None when no allocation in bounds is.
    """
    n = len(grid.modules)
    assert len(levels) == n, f"{len(levels)} levels for {n} modules"
    priority = [0.0] * n if priority is None else list(priority)
    out = [min(max(int(lv), m.lo), m.hi) for m, lv in zip(grid.modules, levels, strict=True)]
    # losing order: lowest priority, then furthest above target; gaining is the reverse order
    losers = sorted(range(n), key=lambda i: (priority[i], grid.target[i] - out[i], i))
    gainers = sorted(range(n), key=lambda i: (-priority[i], out[i] - grid.target[i], i))
    over = any(sum(grid.module_cost(i, out[i]) for i in g) > b for g, b, _ in grid.budget_groups())
    ok = settle(grid, out, losers if over else gainers) and (not over or settle(grid, out, gainers))
    if not ok:
        assert not strict, f"levels {list(levels)} cannot reach the budget within the grid's bounds"
        return None
    return out


def switch_pair(grid: LevelGrid, levels: Sequence[int], up: int, down: int) -> list[int] | None:
    """One level switch (Týr, EvoPress): ``up`` gains a coarse level, ``down`` loses one, and the budget
    is settled in quanta on the MLP of the two (``down`` first), then on the others. None when either
    cannot move or the budget cannot be met."""
    mu, md = grid.modules[up], grid.modules[down]
    if up == down or levels[up] >= mu.hi or levels[down] <= md.lo:
        return None
    child = list(levels)
    child[up] = min(mu.hi, child[up] + mu.stride)
    child[down] = max(md.lo, child[down] - md.stride)
    mlp_first = sorted((down, up), key=lambda i: grid.modules[i].kind != "mlp")
    others = [i for i in range(len(child)) if i not in (up, down) and grid.modules[i].kind == "mlp"]
    if not settle(grid, child, [*mlp_first, *others]):
        return None
    return child if child != list(levels) else None


def random_switch(grid: LevelGrid, levels: Sequence[int], pick: Callable[[list[int]], int]) -> list[int] | None:
    """A random level switch: ``pick`` draws a module that can go up, then one of its budget that can go
    down (:func:`switch_pair`). None when no module can go up, none can pay for it, or the pair cannot move.
    ``pick(candidates)`` returns one of ``candidates`` (the caller's random generator)."""
    ups = [i for i, m in enumerate(grid.modules) if levels[i] < m.hi]
    if not ups:
        return None
    up = pick(ups)
    downs = [i for i in grid.group_of(up) if i != up and levels[i] > grid.modules[i].lo]
    return switch_pair(grid, levels, up, pick(downs)) if downs else None
