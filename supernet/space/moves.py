"""The search's moves on a level grid: level switches (Týr-the-Pruner, EvoPress) that keep the budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from supernet.space.repair import settle

if TYPE_CHECKING:
    from supernet.space.grid import LevelGrid


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
