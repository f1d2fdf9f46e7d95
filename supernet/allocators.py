"""Allocations that need no search: one level per module, on the grid and exactly on budget.

Registry ``ALLOCATORS``: name -> ``(supernet, grid, keep) -> levels`` (grid order). The searched
allocator of the search package plugs into the same interface.

- ``uniform``: the grid's target, every layer as wide as the budget allows.
- ``flap_global`` (FLAP "AL-AM", An et al. 2024, https://arxiv.org/abs/2312.11983): the fluctuation
  scores S of every module are standardised separately, z = (S - mean_module S) / std_module S, all
  units of all modules are sorted by z, and units are kept best first while their cost (what the budget
  counts: parameters, (2g + 2)·d·h for a GQA group and 3h for an MLP channel, or FLOPs) fits the budget. The
  per-module counts are snapped to the nearest level inside the search grid's radius and repaired onto the
  budget, and the units kept are the supernet's (its criterion): FLAP's allocation as a search warm start.
  The baseline a run reports as ``flap_global`` is FLAP's own method, unclipped (:mod:`supernet.flap`).
- ``depth_linear`` (ATP-style, Huang et al. 2024, https://arxiv.org/abs/2502.14770): sparsity rising
  linearly with depth, s_i = s_m + a (2 i / (L - 1) - 1) around each module's target sparsity s_m,
  a = min(``DEPTH_AMPLITUDE``, s_m, 1 - s_m); so the mean sparsity is the target's; snapped and repaired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError
from supernet.levels import LevelGrid, repair

if TYPE_CHECKING:
    from collections.abc import Callable

    from supernet.build import Supernet

DEPTH_AMPLITUDE = 0.1  # depth_linear: sparsity of the first / last layer is the target's -/+ this


def uniform(supernet: Supernet | None, grid: LevelGrid, keep: float) -> list[int]:
    """The grid's target levels."""
    return list(grid.target)


def standardise(scores: torch.Tensor) -> torch.Tensor:
    """z = (S - mean S) / std S over one module's units (population std; all-equal scores give 0)."""
    scores = scores.double()
    std = scores.std(unbiased=False)
    return (scores - scores.mean()) / std if std > 0 else torch.zeros_like(scores)


def flap_global(supernet: Supernet, grid: LevelGrid, keep: float) -> list[int]:
    """FLAP's global standardised ranking of units, kept by cost until the grid's budget is spent."""
    budget = grid.cost(grid.target)
    zs = [standardise(supernet.fluctuation[m.layer, m.kind]) for m in grid.modules]
    z = torch.cat(zs)  # [all units]
    module_of = torch.cat([torch.full((len(zi),), i) for i, zi in enumerate(zs)])  # [all units]
    cost = torch.tensor([grid.costs[grid.modules[i].kind] for i in module_of.tolist()], dtype=torch.long)
    order = torch.argsort(z, descending=True, stable=True)
    spent = torch.cumsum(cost[order], dim=0)
    kept = order[spent <= budget]
    counts = torch.bincount(module_of[kept], minlength=len(grid.modules)).tolist()
    levels = [round(c / m.step) for c, m in zip(counts, grid.modules, strict=True)]
    # priority: z of the best unit the module would gain with one more level (higher = keep more)
    priority = []
    for zi, m, lv in zip(zs, grid.modules, levels, strict=True):
        sorted_z = zi.sort(descending=True).values
        priority.append(float(sorted_z[min(lv * m.step, len(sorted_z) - 1)]))
    return repair(grid, levels, priority)


def depth_linear(supernet: Supernet | None, grid: LevelGrid, keep: float) -> list[int]:
    """Sparsity rising linearly with depth around each module's target; shallow layers win repairs."""
    layers = 1 + max(m.layer for m in grid.modules)
    levels = []
    for m, target in zip(grid.modules, grid.target, strict=True):
        sparsity = 1.0 - target * m.step / m.total
        amplitude = min(DEPTH_AMPLITUDE, sparsity, 1.0 - sparsity)
        position = 2.0 * m.layer / (layers - 1) - 1.0 if layers > 1 else 0.0  # -1 (first) .. 1 (last)
        levels.append(round((1.0 - sparsity - amplitude * position) * m.total / m.step))
    return repair(grid, levels, [-float(m.layer) for m in grid.modules])


ALLOCATORS: dict[str, Callable[[Supernet | None, LevelGrid, float], list[int]]] = {
    "uniform": uniform,
    "flap_global": flap_global,
    "depth_linear": depth_linear,
}


def allocate(name: str, supernet: Supernet | None, grid: LevelGrid, keep: float) -> list[int]:
    """Run allocator ``name``; the result is asserted on the grid's budget."""
    if name not in ALLOCATORS:
        raise UsageError(f"allocator={name!r} is not one of {', '.join(ALLOCATORS)}")
    levels = ALLOCATORS[name](supernet, grid, keep)
    assert grid.on_budget(levels), f"allocator {name} gave levels {levels} off the budget"
    return levels
