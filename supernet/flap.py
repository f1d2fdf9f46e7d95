"""FLAP's own pruning, the baseline a search is measured against (An et al. 2024, "Fluctuation-based
Adaptive Structured Pruning", https://arxiv.org/abs/2312.11983, "AL-AM" with bias compensation).

1. Fluctuation of every unit (``criteria.flap``): S_j = Var_tokens(X_j) * ||W[:, j]||^2 over the input
   channels j of o_proj / down_proj, summed over a unit's channels.
2. Adaptive structure: the scores of each (layer, module) are standardised, z = (S - mean S) / std S;
   every unit of the model is sorted by z and units are kept best first while their cost (what the
   budget counts) fits: one global threshold, so a module may keep anything from none to all.
3. Within a module the kept units are its highest-fluctuation ones; the removed channels' mean
   contribution moves into the output projection's bias, b += W[:, R] @ mean(X[:, R]).

Where strata's grid cannot express this exactly it takes the nearest on-budget allocation, and says so
(``FlapBaseline.approximated``): the kept count of each module is rounded to its level step (one GQA
group or ``channel_quantum`` channels), and the allocation is repaired onto the budget rule (the
cost is in (budget - one MLP step, budget]) by the modules whose next unit has the highest (to gain) or
lowest (to lose) z. The grid spans every width, 0 to dense, not the search's radius.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from supernet import criteria
from supernet.levels import LevelGrid, repair
from supernet.switch import Variant, kept_units

if TYPE_CHECKING:
    from supernet.build import ModuleKey, Supernet
    from supernet.switch import Switcher


FLAP_METHOD = (
    "FLAP (An et al. 2024): fluctuation scores standardised per module, units kept above one global "
    "threshold by cost, removed channels' mean moved into the bias"
)


@dataclass
class FlapBaseline:
    """FLAP's allocation on a full-range grid and the variants that install it."""

    grid: LevelGrid  # the supernet's grid with every module free from 0 to dense
    levels: list[int]  # on ``grid``, on budget
    variants: dict[ModuleKey, Variant | None]
    approximated: dict  # what differs from FLAP's exact method, for metrics.json

    def install(self, switcher: Switcher) -> int:
        return switcher.apply(self.variants)


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """z = (S - mean S) / std S over one module's units (population std; all-equal scores give 0)."""
    scores = scores.double()
    std = scores.std(unbiased=False)
    return (scores - scores.mean()) / std if std > 0 else torch.zeros_like(scores)


def full_range(grid: LevelGrid) -> LevelGrid:
    """``grid`` with every module free from its least level (0: removed) to dense, moved a step at a time."""
    modules = tuple(dataclasses.replace(m, lo=m.least, hi=m.top, stride=1) for m in grid.modules)
    return dataclasses.replace(grid, modules=modules, joint=True)


def global_counts(fluctuation: dict[ModuleKey, torch.Tensor], grid: LevelGrid) -> tuple[list[int], list[torch.Tensor]]:
    """FLAP's kept units per module (grid order) under one global z threshold, and each module's z."""
    # z rounded to 1e-9, so float noise does not order ties (a module of two units has z = -1 and +1
    # exactly); ties go to the higher fluctuation itself, then to the shallower module (stable sorts)
    zs = [torch.round(standardise(fluctuation[m.layer, m.kind]), decimals=9) for m in grid.modules]
    z = torch.cat(zs)  # [all units]
    raw = torch.cat([fluctuation[m.layer, m.kind].double() for m in grid.modules])  # [all units]
    module_of = torch.cat([torch.full((len(zi),), i) for i, zi in enumerate(zs)])  # [all units]
    unit_cost = [grid.unit_cost_dense(i) for i in range(len(grid.modules))]  # a coupled unit: its partner dense
    cost = torch.tensor([unit_cost[i] for i in module_of.tolist()], dtype=torch.long)
    by_raw = torch.argsort(raw, descending=True, stable=True)
    order = by_raw[torch.argsort(z[by_raw], descending=True, stable=True)]
    kept = order[torch.cumsum(cost[order], dim=0) <= grid.budget]
    return torch.bincount(module_of[kept], minlength=len(grid.modules)).tolist(), zs


def flap_levels(fluctuation: dict[ModuleKey, torch.Tensor], grid: LevelGrid) -> tuple[LevelGrid, list[int], list[int]]:
    """FLAP's allocation as levels of ``full_range(grid)``, on its budget, and FLAP's exact unit counts.

    Each module's count is rounded to its step; the repair that follows moves the modules whose next unit
    has the highest z up first (and the lowest down first). Returns (full grid, levels, exact counts)."""
    full = full_range(grid)
    counts, zs = global_counts(fluctuation, full)
    return full, nearest_on_budget(full, counts, zs), counts


def nearest_on_budget(grid: LevelGrid, counts: list[int], zs: list[torch.Tensor]) -> list[int]:
    """FLAP's unit counts as levels of ``grid``: each rounded to its step (clipped into the grid's range by
    ``repair``), then repaired onto the budget, the module whose next unit has the highest z first."""
    levels = [m.top if c == m.total else round(c / m.step) for c, m in zip(counts, grid.modules, strict=True)]
    priority = []  # z of the best unit a module would gain with one more level (higher = keep more)
    for zi, m, lv in zip(zs, grid.modules, levels, strict=True):
        ordered = zi.sort(descending=True).values
        priority.append(float(ordered[min(lv * m.step, len(ordered) - 1)]))
    return repair(grid, levels, priority)


def flap_baseline(net: Supernet, switcher: Switcher) -> FlapBaseline:
    """FLAP's global allocation of ``net``'s units on its budget, with FLAP's bias compensation.

    ``net`` must hold the fluctuation scores and mean inputs of every module (every build does);
    ``switcher`` gives the dense output projections."""
    adapter = switcher.adapter
    grid, levels, counts = flap_levels(net.fluctuation, net.grid)
    variants: dict[ModuleKey, Variant | None] = {}
    for m, lv in zip(grid.modules, levels, strict=True):
        key = (m.layer, m.kind)
        count = m.units(lv)
        if count == m.total:
            variants[key] = None
            continue
        if m.kind in ("mlp", "experts") and adapter.moe:  # experts or their channels, by the supernet's ranking
            variants[key] = Variant(kept_units(net.rankings[key], count))
            continue
        ranking = criteria.ranking(net.fluctuation[key], adapter.unit_step(m.kind))
        units = kept_units(ranking, count)
        weight = switcher.dense_params[key][adapter.output_projection(m.kind)][0].detach().cpu().double()  # [out, in]
        removed = torch.ones(weight.shape[1], dtype=torch.bool)
        removed[adapter.output_columns(units, m.kind)] = False
        bias = weight[:, removed] @ net.means[key].double()[removed]  # [out]
        variants[key] = Variant(units, bias.float(), None)
    moved = [abs(m.units(lv) - c) for lv, c, m in zip(levels, counts, grid.modules, strict=True)]
    approximated = {
        "rule": "per-module kept counts rounded to the level step and repaired onto the budget rule",
        "steps": {k: grid.step(k) for k in ("attn", "mlp")},
        "units_moved": sum(moved),
        "modules_moved": sum(1 for d in moved if d),
        "exact_units_cost": int(sum(c * grid.unit_cost_dense(i) for i, c in enumerate(counts))),
    }
    return FlapBaseline(grid, levels, variants, approximated)
