"""Budget repair on a level grid: bring an allocation's cost into the budget window (the budget rule of
:mod:`supernet.space.grid`), cheapest harm first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from supernet.kinds import EXPERTS

if TYPE_CHECKING:
    from supernet.space.grid import LevelGrid


def _gain(grid: LevelGrid, levels: Sequence[int], i: int) -> int:
    """What one more level of module ``i`` costs, the others as in ``levels``."""
    return grid.share(i, levels[i] + 1, levels) - grid.share(i, levels[i], levels)


def settle(grid: LevelGrid, levels: list[int], order: Sequence[int]) -> bool:
    """Bring each budget's cost into its window by moving the modules of ``order``, first ones first.

    While a budget is exceeded, the first module of ``order`` in it that can go down loses a level; then
    while the next level of one of them still fits, the first such gains one. Moves are a coarse level
    at a time while that fits the gap, then single steps. Returns whether every budget is met (in place).
    """
    for members, budget, slack in grid.budget_groups():
        movers = [i for i in order if i in members]
        cost = grid.cost(levels, members)
        while cost > budget:
            i = next((i for i in movers if levels[i] > grid.modules[i].lo), None)
            if i is None:
                return False
            m = grid.modules[i]
            down = levels[i] - m.lo
            one = grid.share(i, levels[i], levels) - grid.share(i, levels[i] - 1, levels)
            moves = max(1, min(m.stride, down, (cost - budget) // max(one, 1)))
            cost -= grid.share(i, levels[i], levels) - grid.share(i, levels[i] - moves, levels)
            levels[i] -= moves
        cost = _fill(grid, levels, movers, cost, budget)
        if cost <= budget - slack and grid.coupled:
            cost = _trade(grid, levels, movers, cost, budget, slack)
        if cost <= budget - slack:
            return False
    return True


def _fill(grid: LevelGrid, levels: list[int], movers: Sequence[int], cost: int, budget: int) -> int:
    """While the next level of one of ``movers`` still fits, the first such gains it (in place); the cost."""
    for i in movers:
        m = grid.modules[i]
        while levels[i] < m.hi and cost + (gain := _gain(grid, levels, i)) <= budget:
            moves = max(1, min(m.stride, m.hi - levels[i], (budget - cost) // max(gain, 1)))
            cost += grid.share(i, levels[i] + moves, levels) - grid.share(i, levels[i], levels)
            levels[i] += moves
    return cost


def _trade(grid: LevelGrid, levels: list[int], movers: Sequence[int], cost: int, budget: int, slack: int) -> int:
    """Close a gap of at least ``slack`` that no single move fits (every width at its top, an expert dearer
    than the gap): one more expert in a layer, paid by that layer's width, then fill again. The first of
    ``movers`` that lands in the window wins; a trade that cannot pay for itself is undone."""
    for i in movers:
        m = grid.modules[i]
        if m.kind != EXPERTS or levels[i] >= m.hi:
            continue
        w = m.partner
        trial = list(levels)
        trial[i] += 1
        paid = cost + grid.share(i, trial[i], trial) - grid.share(i, levels[i], levels)
        while paid > budget and trial[w] > grid.modules[w].lo:
            paid -= grid.share(w, trial[w], trial) - grid.share(w, trial[w] - 1, trial)
            trial[w] -= 1
        if paid > budget:
            continue
        paid = _fill(grid, trial, movers, paid, budget)
        levels[:] = trial
        cost = paid
        if cost > budget - slack:
            break
    return cost


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
    over = any(grid.cost(out, g) > b for g, b, _ in grid.budget_groups())
    ok = settle(grid, out, losers if over else gainers) and (not over or settle(grid, out, gainers))
    if not ok:
        assert not strict, f"levels {list(levels)} cannot reach the budget within the grid's bounds"
        return None
    return out
