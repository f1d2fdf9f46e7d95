"""Building level grids (:mod:`supernet.space.grid`): around the most uniform allocation that meets a budget
(:func:`make_grid`), and Týr-the-Pruner's coarse-to-fine refinement around an allocation (:func:`refine_grid`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from supernet.errors import UsageError
from supernet.kinds import ATTN, EXPERTS, KINDS, MLP, SHARED
from supernet.space.grid import LevelGrid, ModuleGrid
from supernet.space.repair import repair

if TYPE_CHECKING:
    from supernet.io.adapters.base import DecoderAdapter


@dataclass
class GridConfig:
    """The level grid's settings. The supernet's config extends it (its variants are built on the grid), so
    they are set as ``supernet.radius=...`` and key the supernet cache."""

    radius: int = 4  # coarse levels each module may move around its target: 4 -> 9 levels, +-50% (Týr)
    level_fraction: float = 0.125  # a coarse level's share of its module (Týr: 12.5%); mutations move by it
    attn_step: int = 1  # GQA groups (head: query heads per group) per attention level: the finest change
    channel_quantum: int = 8  # MLP widths are multiples of this (64/128 for hardware-friendly widths)
    joint_budget: bool = True  # one budget over attention and MLP; false: attention keeps the uniform group count

    def __post_init__(self) -> None:
        for name in ("attn_step", "channel_quantum"):
            if getattr(self, name) < 1:
                raise UsageError(f"supernet.{name}={getattr(self, name)} must be >= 1")
        if self.radius < 0:
            raise UsageError(f"supernet.radius={self.radius} must be >= 0")
        if not 0.0 < self.level_fraction <= 1.0:
            raise UsageError(f"supernet.level_fraction={self.level_fraction} is outside (0, 1]: a module's share")


def strides(totals: dict[str, int], steps: dict[str, int], fraction: float) -> dict[str, int]:
    """Levels per coarse level: ``fraction`` of each module, at least one step."""
    return {k: max(1, round(fraction * totals[k] / steps[k])) for k in totals}


@dataclass(frozen=True)
class _Frame:
    """What every grid of one :func:`make_grid` call shares: the layers, a layer's kinds and, per kind, a level's
    units, the dense module's units and level, the levels of a coarse level and the lowest level (a floor)."""

    num_layers: int
    kinds: tuple[str, ...]
    steps: dict[str, int]
    totals: dict[str, int]
    top: dict[str, int]
    stride: dict[str, int]
    least: dict[str, int]
    unit_params: dict[str, int]
    joint: bool
    extra: dict  # LevelGrid's unit_cost, base_params, base_cost and moe

    def around(self, centre: dict[str, list[int]], reach: int, budget: int) -> LevelGrid:
        """The grid centred on ``centre`` (levels per kind, per layer; raised to the floors), every module
        ranging ``reach`` coarse levels around its centre, with ``budget``."""
        modules = []
        for layer in range(self.num_layers):
            first = len(modules)
            for kind in self.kinds:
                c = max(centre[kind][layer], self.least[kind])
                reach_levels = reach * self.stride[kind]
                lo, hi = max(self.least[kind], c - reach_levels), min(self.top[kind], c + reach_levels)
                pair = {MLP: EXPERTS, EXPERTS: MLP}.get(kind)  # a layer's expert count and width cost together
                partner = first + self.kinds.index(pair) if pair in self.kinds else -1
                modules.append(ModuleGrid(layer, kind, self.steps[kind], self.totals[kind], lo, hi, self.stride[kind],
                                          c, self.least[kind], partner))  # fmt: skip
        centres = tuple(m.centre for m in modules)
        return LevelGrid(tuple(modules), dict(self.unit_params), self.joint, centres, budget, **self.extra)


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
    frame = _Frame(num_layers, kinds, steps, totals, top, stride, least, unit_params, joint, extra)
    dense_grid = frame.around({k: [top[k]] * num_layers for k in kinds}, 0, 0)
    dense = dense_grid.dense_cost()
    budget = math.floor(keep * dense + 1e-9 * dense)  # float noise must not cost a unit at keep = 1
    grid = frame.around(_uniform_centre(frame, dense_grid, keep, budget), radius, budget)
    return _on_target(grid, keep=keep, steps=steps, dense=dense)


def _uniform_centre(frame: _Frame, dense_grid: LevelGrid, keep: float, budget: int) -> dict[str, list[int]]:
    """The most uniform allocation at ``keep``: levels per kind, per layer (not yet raised to the floors).
    Attention keeps round(keep * groups) on average (and the additive kinds keep of theirs); with coupled
    experts, a uniform count of them; the MLP takes the rest of ``budget``, spread evenly."""
    n, kinds, steps, totals, top = frame.num_layers, frame.kinds, frame.steps, frame.totals, frame.top
    costs = dense_grid.costs
    attn = min(n * top[ATTN], round(keep * n * totals[ATTN] / steps[ATTN]))
    centre = {ATTN: _spread(attn, n)}
    for kind in kinds[len(KINDS) :]:  # additive kinds (a shared expert) keep ``keep`` of their units
        if kind != EXPERTS:
            centre[kind] = _spread(round(keep * n * totals[kind] / steps[kind]), n)
    placed = _placed_cost(dense_grid, centre)
    step_cost = steps[MLP] * costs[MLP]
    if EXPERTS in kinds:  # the experts first (a uniform count), their width with what is left
        uniform = min(top[EXPERTS], max(frame.least[EXPERTS], round(keep * totals[EXPERTS])))
        experts = top[EXPERTS] if dense_grid.moe.get("active_top_k") else uniform
        centre[EXPERTS] = [experts] * n
        placed += n * experts * costs[EXPERTS]
        step_cost *= dense_grid.copies(experts)
    mlp = max(0, min(n * top[MLP], (budget - placed) // step_cost))
    centre[MLP] = _spread(mlp, n)
    return centre


def _placed_cost(dense_grid: LevelGrid, centre: dict[str, list[int]]) -> int:
    """What the uncoupled modules of ``centre`` (levels per kind, per layer) cost: their units, and a base while
    any is kept (``LevelGrid.module_cost``). Measured on the dense grid with every level from 0 up allowed: a
    centre is raised to its floor only in the grid built around it."""
    modules = tuple(dataclasses.replace(m, lo=0) for m in dense_grid.modules)
    measure = dataclasses.replace(dense_grid, modules=modules)
    index = {(m.layer, m.kind): i for i, m in enumerate(modules)}
    return sum(
        measure.module_cost(index[layer, kind], lv)
        for kind, levels in centre.items()
        for layer, lv in enumerate(levels)
    )


def _on_target(grid: LevelGrid, *, keep: float, steps: dict[str, int], dense: int) -> LevelGrid:
    """``grid`` with its target repaired onto the budget, or a UsageError naming the smallest ``keep`` its steps
    allow when no allocation meets the budget (or only one keeping nothing)."""
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


def supernet_grid(
    adapter: DecoderAdapter,
    keep: float,
    cfg: GridConfig,
    *,
    unit_cost: dict[str, int] | None = None,
    base_cost: dict[str, int] | None = None,
    active: bool = False,
) -> LevelGrid:
    """The level grid of ``cfg`` around the uniform allocation at ``keep`` of the units' cost.

    ``unit_cost``, ``base_cost``: what the budget counts per unit and per present module (None =
    parameters; supernet/space/budget.py for FLOPs). An attention level is ``attn_step`` GQA groups, or
    ``attn_step`` query heads of every group with ``attn_unit=head``. ``active``: the budget counts what
    one token uses (a mixture with ``expert_unit=both`` counts an expert channel in top-k experts)."""
    geo = adapter.geometry
    kinds = adapter.grid_kinds
    totals = {k: adapter.units_total(k) for k in kinds}
    attn_step = cfg.attn_step * adapter.unit_step(ATTN)
    if attn_step > totals[ATTN]:
        raise UsageError(
            f"supernet.attn_step={cfg.attn_step} is more than a layer's {totals[ATTN] // adapter.unit_step(ATTN)} "
            f"{'query heads per group' if adapter.attn_unit == 'head' else 'GQA groups'}"
        )
    mlp_step = 1 if adapter.moe and not adapter.channel_units else cfg.channel_quantum  # whole experts: 1
    if adapter.moe and adapter.channel_units and cfg.channel_quantum % 8:
        raise UsageError(f"supernet.channel_quantum={cfg.channel_quantum} with supernet.expert_unit="
                         f"{adapter.expert_unit}: transformers' grouped expert kernels need each expert's rows in "
                         "multiples of 16 bytes; use a multiple of 8")  # fmt: skip
    if mlp_step > totals[MLP]:
        raise UsageError(
            f"supernet.channel_quantum={cfg.channel_quantum} is more than the {totals[MLP]} MLP channels of a layer"
        )
    # an expert count moves an expert at a time; a shared expert's width as the MLP's channels
    steps = {ATTN: attn_step, MLP: mlp_step, EXPERTS: 1, SHARED: cfg.channel_quantum}
    moe = None
    if adapter.moe:
        moe = {"unit": adapter.expert_unit, "experts": adapter.num_experts, "width": adapter.expert_width}
        if active and adapter.expert_unit == "both":
            moe["active_top_k"] = adapter.top_k
    return make_grid(
        num_layers=geo.num_layers,
        totals=totals,
        unit_params={k: adapter.unit_params(k) for k in kinds},
        keep=keep,
        steps={k: step for k, step in steps.items() if k in kinds},
        floors={k: adapter.min_units(k) for k in kinds},
        radius=cfg.radius,
        joint=cfg.joint_budget,
        fraction=cfg.level_fraction,
        unit_cost=unit_cost,
        base_params={k: adapter.base_params(k) for k in kinds},
        base_cost=base_cost,
        moe=moe,
    )
