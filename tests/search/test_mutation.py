"""Level-switch mutation: on budget, inside the grid, legal at the edges."""

from __future__ import annotations

import numpy as np

from search.mutation import level_switch, pair_count
from supernet.levels import make_grid


def test_children_stay_on_budget_and_in_bounds(grid) -> None:
    rng = np.random.default_rng(0)
    parent = list(grid.target)
    for _ in range(500):
        child = level_switch(rng, parent, grid)
        assert grid.on_budget(child)
        parent = child


def test_mutation_is_legal_at_the_grid_edges(grid) -> None:
    # every module but two at an edge: only moves between legal neighbours remain
    low = [m.lo for m in grid.modules]
    high = [m.hi for m in grid.modules]
    rng = np.random.default_rng(1)
    for edge in (low, high):
        for _ in range(100):
            child = level_switch(rng, edge, grid)
            assert grid.in_bounds(child)
            assert sum(child) == sum(edge)


def test_separate_budgets_keep_each_kind_sum() -> None:
    grid = make_grid(num_layers=3, totals={"attn": 4, "mlp": 64}, unit_params={"attn": 80, "mlp": 10},
                     keep=0.5, steps={"attn": 1, "mlp": 8}, radius=2, joint=False)  # fmt: skip
    rng = np.random.default_rng(2)
    parent = list(grid.target)
    for _ in range(200):
        child = level_switch(rng, parent, grid)
        assert grid.budget_sums(child) == grid.budget_sums(grid.target)
        parent = child


def test_pair_count_is_biased_towards_one() -> None:
    rng = np.random.default_rng(3)
    counts = np.bincount([pair_count(rng, 4) for _ in range(4000)], minlength=5)[1:]
    # P(min of two uniforms on 1..4 = k) = (9 - 2k) / 16: 7/16, 5/16, 3/16, 1/16
    np.testing.assert_allclose(counts / 4000, [7 / 16, 5 / 16, 3 / 16, 1 / 16], atol=0.03)
