"""FLAP's allocation (An et al. 2024, "Fluctuation-based Adaptive Structured Pruning",
https://arxiv.org/abs/2312.11983, "AL-AM"): how many units every module keeps under one global threshold.

1. Fluctuation of every unit (``supernet.variants.criteria.flap``): S_j = Var_tokens(X_j) * ||W[:, j]||^2 over the
   input channels j of o_proj / down_proj, summed over a unit's channels.
2. Adaptive structure: the scores of each (layer, module) are standardised, z = (S - mean S) / std S;
   every unit of the model is sorted by z and units are kept best first while their cost (what the
   budget counts) fits: one global threshold, so a module may keep anything from none to all.

Step 3, the kept units and FLAP's bias compensation installed as the run's baseline, is
:mod:`supernet.variants.flap_baseline`. Where strata's grid cannot express the allocation exactly it takes the
nearest on-budget one (:func:`flap_levels`; the baseline reports the difference): the kept count of each module is
rounded to its level step (one GQA group or ``channel_quantum`` channels), and the allocation is repaired onto the
budget rule (the cost is in (budget - one MLP step, budget]) by the modules whose next unit has the highest (to
gain) or lowest (to lose) z. The grid spans every width, 0 to dense, not the search's radius.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch

from supernet.space.grid import LevelGrid
from supernet.space.repair import repair

if TYPE_CHECKING:
    from supernet.kinds import ModuleKey


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
