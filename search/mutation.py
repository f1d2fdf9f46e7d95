"""Level-switch mutation: move modules up and down one level in pairs, so the budget never moves.

Týr-the-Pruner and EvoPress mutate an allocation by taking one level from a module and giving it
to another; every level step is worth the same number of parameters (supernet/levels.py), so the
child is on budget by construction. Pairs per child: min(randint(1, 4), randint(1, 4)) (Týr), which
favours one pair (7/16) over four (1/16).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from supernet.levels import LevelGrid


def budget_groups(grid: LevelGrid) -> list[list[int]]:
    """Module indices whose levels share a budget: all (joint), or attention and MLP apart."""
    if grid.joint:
        return [list(range(len(grid.modules)))]
    return [[i for i, m in enumerate(grid.modules) if m.kind == kind] for kind in ("attn", "mlp")]


def pair_count(rng: np.random.Generator, max_pairs: int) -> int:
    """min of two uniform draws in [1, max_pairs]: biased towards one pair."""
    return int(min(rng.integers(1, max_pairs + 1), rng.integers(1, max_pairs + 1)))


def level_switch(rng: np.random.Generator, parent: Sequence[int], grid: LevelGrid, *, max_pairs: int = 4) -> list[int]:
    """A child of ``parent``: ``pair_count`` times, one module up a level and another of the same
    budget group down one, always inside each module's [lo, hi]. Pure in (rng, parent, grid)."""
    child = list(parent)
    groups = budget_groups(grid)
    for _ in range(pair_count(rng, max_pairs)):
        movable = []
        for group in groups:
            ups = [i for i in group if child[i] < grid.modules[i].hi]
            downs = [i for i in group if child[i] > grid.modules[i].lo]
            if ups and downs and (len(ups) > 1 or len(downs) > 1 or ups != downs):
                movable.append((ups, downs))
        if not movable:
            break
        ups, downs = movable[int(rng.integers(len(movable)))]
        up = ups[int(rng.integers(len(ups)))]
        choices = [i for i in downs if i != up]
        if not choices:
            continue
        down = choices[int(rng.integers(len(choices)))]
        child[up] += 1
        child[down] -= 1
    return child
