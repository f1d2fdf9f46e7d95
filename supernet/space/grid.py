"""The level grid: for every module, the widths a search may give it, and the budget they must meet.

A module's **level** ``l`` keeps ``min(l * step, total)`` units: ``step`` is the finest change of
width (``attn_step`` GQA groups, or query heads of every group; ``channel_quantum`` MLP channels, or channels of
every expert; one whole expert where a mixture's experts are the units; ``channel_quantum`` channels of a shared
expert), so level 0 removes the sub-block (depth
pruning) and the top level ``ceil(total / step)`` is the dense module. A **coarse level** is
``stride`` levels, a fixed fraction of the module (Týr-the-Pruner: 12.5%); mutations move modules by
coarse levels, compensation is fitted at the coarse widths (``ModuleGrid.anchors``), and every module
may range ``radius`` coarse levels around its centre (Týr: 4, i.e. 9 levels covering +-50%).

**The budget rule** (README.md, Design) holds for every layout, whatever a GQA group costs in MLP channels:
the cost of an allocation (parameters or FLOPs, ``supernet/space/budget.py``) is never above the budget
and below it by less than one MLP step's cost. A move of attention is paid for in MLP quanta
(:func:`settle`), so attention and MLP share one budget even when a group is no whole number of
channels (Llama-3.1-8B: 426.7). With ``joint=False`` attention keeps its target's group count and the
MLP meets the rest of the budget.

**Coupled modules** (a mixture of experts with ``supernet.expert_unit=both``): a layer has an ``experts``
module (how many experts it keeps, at least top-k) beside its ``mlp`` module (each kept expert's width),
and the two cost together, not additively: e experts of width w cost e R + w C c(e), R an expert's router
row, C a channel in one expert, c(e) = e for parameters and min(k, e) for active parameters (a token uses
k experts); nothing when e or w is 0 (the block is removed). The width module carries the pair's cost
(:meth:`LevelGrid.owned`), and a move of either is priced with the other as it stands
(:meth:`LevelGrid.share`); the cost is monotone in both levels, so the budget rule and every move
below hold unchanged, with one MLP step's cost taken in every expert (the slack).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from supernet.kinds import EXPERTS, KINDS, SHARED
from supernet.space.allocation import Allocation, LayerAllocation


@dataclass(frozen=True)
class ModuleGrid:
    layer: int
    kind: str  # attn | mlp | experts | shared (supernet.kinds)
    step: int  # units per level: the finest change of width
    total: int  # units of the dense module
    lo: int  # lowest level allowed
    hi: int  # highest level allowed (<= top)
    stride: int = 1  # levels per coarse level: a mutation's move, the spacing of compensated widths
    centre: int = 0  # the level the coarse levels are counted from (the target, or the best so far)
    least: int = 0  # the lowest level any grid may give it (a MoE layer's top-k experts; 0: removable)
    partner: int = -1  # the index of the module it costs together with (a layer's experts and their width)

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

    @property
    def coupled(self) -> bool:
        """Whether a layer's expert count and expert width are two modules costing together."""
        return bool(self.moe) and self.moe["unit"] == "both"

    def copies(self, experts: int) -> int:
        """How many of a layer's ``experts`` the budget counts one expert channel in: all of them
        (parameters), or the top-k a token uses (``budget.kind=active_params``)."""
        top_k = (self.moe or {}).get("active_top_k")
        return experts if top_k is None else min(top_k, experts)

    def step(self, kind: str) -> int:
        return next(m.step for m in self.modules if m.kind == kind)

    def stride(self, kind: str) -> int:
        return max(m.stride for m in self.modules if m.kind == kind)

    def step_cost(self, kind: str) -> int:
        """One step of a module of ``kind``; a coupled width step is paid in every expert a layer may keep."""
        cost = self.step(kind) * self.costs[kind]
        return cost * self.copies(self.moe["experts"]) if self.coupled and kind == "mlp" else cost

    def unit_cost_dense(self, i: int) -> int:
        """What one unit of module ``i`` costs with its partner dense: an expert at full width (counting
        parameters held), a channel in every expert, or in top-k of them (FLAP's global ranking prices units so)."""
        m = self.modules[i]
        if m.partner < 0:
            return self.costs[m.kind]
        if m.kind == EXPERTS:  # a token's compute does not grow with experts kept (past top-k): its router row
            active = self.moe.get("active_top_k") is not None
            return self.costs[EXPERTS] + (0 if active else self.moe["width"] * self.costs["mlp"])
        return self.costs["mlp"] * self.copies(self.moe["experts"])

    def module_cost(self, i: int, level: int) -> int:
        """What an uncoupled module ``i`` costs at ``level``: its units, plus its base while it keeps any."""
        m = self.modules[i]
        assert m.partner < 0, f"{m} costs together with module {m.partner}: use share()"
        units = m.units(level)
        return units * self.costs[m.kind] + (self.bases.get(m.kind, 0) if units else 0)

    def share(self, i: int, level: int, levels: Sequence[int]) -> int:
        """What module ``i`` at ``level`` costs together with its partner at ``levels[partner]`` (an
        uncoupled module: alone). Differences of it price a move of ``i`` with everything else fixed."""
        m = self.modules[i]
        if m.partner < 0:
            return self.module_cost(i, level)
        at = {i: level, m.partner: levels[m.partner]}
        e, w = (i, m.partner) if m.kind == EXPERTS else (m.partner, i)
        experts, width = self.modules[e].units(at[e]), self.modules[w].units(at[w])
        if not experts or not width:
            return 0
        return experts * self.costs[EXPERTS] + width * self.costs["mlp"] * self.copies(experts)

    def owned(self, i: int, levels: Sequence[int]) -> int:
        """Module ``i``'s part of ``cost(levels)``: a coupled pair is carried by its width module."""
        m = self.modules[i]
        return 0 if m.partner >= 0 and m.kind == EXPERTS else self.share(i, levels[i], levels)

    def cost(self, levels: Sequence[int], members: Sequence[int] | None = None) -> int:
        """What the budget counts (parameters or FLOPs) for an allocation given as levels (of ``members``)."""
        return sum(self.owned(i, levels) for i in (range(len(self.modules)) if members is None else members))

    def dense_cost(self) -> int:
        """What the dense model costs (every module at its top level)."""
        full = tuple(dataclasses.replace(m, lo=m.least, hi=m.top) for m in self.modules)
        return dataclasses.replace(self, modules=full).cost([m.top for m in self.modules])

    def params(self, levels: Sequence[int]) -> int:
        """Prunable parameters kept by an allocation given as levels (its cost when parameters are counted)."""
        moe = self.moe and {k: v for k, v in self.moe.items() if k != "active_top_k"}
        return dataclasses.replace(self, unit_cost=None, base_cost=None, moe=moe).cost(levels)

    def budget_groups(self) -> list[tuple[list[int], int, int]]:
        """(module indices, budget, slack) of each budget: cost in (budget - slack, budget].

        Joint: one over every module, slack one MLP step's cost. Separate: attention at its target's
        cost, the MLP with the rest."""
        everything = list(range(len(self.modules)))
        if self.joint:
            return [(everything, self.budget, self.step_cost("mlp"))]
        attn = [i for i in everything if self.modules[i].kind == "attn"]
        mlp = [i for i in everything if self.modules[i].kind != "attn"]
        attn_budget = sum(self.module_cost(i, self.target[i]) for i in attn)
        return [(attn, attn_budget, self.step_cost("attn")), (mlp, self.budget - attn_budget, self.step_cost("mlp"))]

    def group_of(self, i: int) -> list[int]:
        return next(members for members, _, _ in self.budget_groups() if i in members)

    def on_budget(self, levels: Sequence[int]) -> bool:
        if not self.in_bounds(levels):
            return False
        for members, budget, slack in self.budget_groups():
            cost = self.cost(levels, members)
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
        layers = []
        for _, e in sorted(by_layer.items()):
            fields = {"attn_units": e["attn"], "attn_units_total": e["attn_total"],
                      "mlp_units": e["mlp"], "mlp_units_total": e["mlp_total"]}  # fmt: skip
            if self.moe and self.moe["unit"] == "expert":  # the MLP's units are experts, each at its full width
                width = self.moe["width"]
                fields |= {"mlp_units": width, "mlp_units_total": width}
                fields |= {"experts": e["mlp"], "experts_total": e["mlp_total"]}
            elif self.moe:  # channels of experts: the experts kept (coupled: a module; else all) while any channel is
                kept = e.get(EXPERTS, self.moe["experts"]) if e["mlp"] else 0
                fields |= {"experts": kept, "experts_total": self.moe["experts"]}
            if SHARED in e:  # Qwen2-MoE's shared expert
                fields |= {"shared_units": e[SHARED], "shared_units_total": e[f"{SHARED}_total"]}
            layers.append(LayerAllocation(**fields))
        return Allocation(tuple(layers), mlp_unit="expert" if self.moe and self.moe["unit"] == "expert" else "channel")
