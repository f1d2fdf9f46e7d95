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
  The baseline a run reports as ``flap_global`` is FLAP's own method, unclipped (:mod:`supernet.space.flap`).
- ``depth_linear`` (ATP-style, Huang et al. 2024, https://arxiv.org/abs/2502.14770): sparsity rising
  linearly with depth, s_i = s_m + a (2 i / (L - 1) - 1) around each module's target sparsity s_m,
  a = min(``DEPTH_AMPLITUDE``, s_m, 1 - s_m); so the mean sparsity is the target's; snapped and repaired.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from supernet.errors import check_choice
from supernet.space.flap import global_counts, nearest_on_budget
from supernet.space.grid import LevelGrid
from supernet.space.repair import repair

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import torch

    from supernet.kinds import ModuleKey


class Scored(Protocol):
    """What an allocator reads of a supernet: FLAP's fluctuation scores of every module's units."""

    fluctuation: Mapping[ModuleKey, torch.Tensor]  # [units] per (layer, kind)


DEPTH_AMPLITUDE = 0.1  # depth_linear: sparsity of the first / last layer is the target's -/+ this


def uniform(supernet: Scored | None, grid: LevelGrid, keep: float) -> list[int]:
    """The grid's target levels."""
    return list(grid.target)


def flap_global(supernet: Scored, grid: LevelGrid, keep: float) -> list[int]:
    """FLAP's global standardised ranking of units (supernet/space/flap.py), snapped into the grid's range."""
    counts, zs = global_counts(supernet.fluctuation, grid)
    return nearest_on_budget(grid, counts, zs)


def depth_linear(supernet: Scored | None, grid: LevelGrid, keep: float) -> list[int]:
    """Sparsity rising linearly with depth around each module's target; shallow layers win repairs."""
    layers = 1 + max(m.layer for m in grid.modules)
    levels = []
    for m, target in zip(grid.modules, grid.target, strict=True):
        sparsity = 1.0 - target * m.step / m.total
        amplitude = min(DEPTH_AMPLITUDE, sparsity, 1.0 - sparsity)
        position = 2.0 * m.layer / (layers - 1) - 1.0 if layers > 1 else 0.0  # -1 (first) .. 1 (last)
        levels.append(round((1.0 - sparsity - amplitude * position) * m.total / m.step))
    return repair(grid, levels, [-float(m.layer) for m in grid.modules])


ALLOCATORS: dict[str, Callable[[Scored | None, LevelGrid, float], list[int]]] = {
    "uniform": uniform,
    "flap_global": flap_global,
    "depth_linear": depth_linear,
}


def allocate(name: str, supernet: Scored | None, grid: LevelGrid, keep: float) -> list[int]:
    """Run allocator ``name``; the result is asserted on the grid's budget."""
    check_choice("allocator", name, ALLOCATORS)
    levels = ALLOCATORS[name](supernet, grid, keep)
    assert grid.on_budget(levels), f"allocator {name} gave levels {levels} off the budget"
    return levels
