"""Level-switch mutation: one module up a coarse level, another down one, the budget settled in quanta.

Týr-the-Pruner and EvoPress mutate an allocation by taking a level from one module and giving it to
another. On real layouts a GQA group costs no whole number of MLP channels, so the pair's cost
difference is settled on the MLP of the pair in ``channel_quantum`` steps
(:func:`supernet.space.moves.switch_pair`): the child is on budget by construction. Pairs per child:
min(randint(1, 4), randint(1, 4)) (Týr), which favours one pair (7/16) over four (1/16).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from supernet.space.moves import random_switch

if TYPE_CHECKING:
    import numpy as np

    from supernet.space.grid import LevelGrid


def pair_count(rng: np.random.Generator, max_pairs: int) -> int:
    """min of two uniform draws in [1, max_pairs]: biased towards one pair."""
    return int(min(rng.integers(1, max_pairs + 1), rng.integers(1, max_pairs + 1)))


def level_switch(
    rng: np.random.Generator, parent: Sequence[int], grid: LevelGrid, *, max_pairs: int = 4, tries: int = 8
) -> list[int]:
    """A child of ``parent``: ``pair_count`` times, a module that can go up gains a coarse level and
    another of its budget that can go down loses one (:func:`supernet.space.moves.random_switch`); a draw
    that cannot move is drawn again, ``tries`` times at most. Pure in (rng, parent, grid)."""

    def pick(candidates: list[int]) -> int:
        return candidates[int(rng.integers(len(candidates)))]

    child = list(parent)
    for _ in range(pair_count(rng, max_pairs)):
        for _ in range(tries):
            moved = random_switch(grid, child, pick)
            if moved is not None:
                child = moved
                break
    return child
