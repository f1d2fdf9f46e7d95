"""Level-switch mutation: on budget, inside the grid, legal at the edges."""

from __future__ import annotations

import numpy as np

from search.mutation import level_switch, pair_count
from supernet.space.grids import make_grid


def test_children_stay_on_budget_and_in_bounds(grid) -> None:
    rng = np.random.default_rng(0)
    parent = list(grid.target)
    for _ in range(500):
        child = level_switch(rng, parent, grid)
        assert grid.on_budget(child)
        parent = child


def test_mutation_moves_coarse_levels_and_pays_in_quanta() -> None:
    # a group costs 13.3 channels: every child is within one MLP step below the budget, never above
    grid = make_grid(num_layers=3, totals={"attn": 4, "mlp": 64}, unit_params={"attn": 80, "mlp": 6},
                     keep=0.5, steps={"attn": 1, "mlp": 4}, radius=4)  # fmt: skip
    rng = np.random.default_rng(1)
    parent, moved = list(grid.target), set()
    for _ in range(300):
        child = level_switch(rng, parent, grid)
        assert grid.on_budget(child)
        assert grid.budget - grid.step_cost("mlp") < grid.cost(child) <= grid.budget
        moved |= {i for i, (a, b) in enumerate(zip(parent, child, strict=True)) if a != b}
        parent = child
    assert moved == set(range(len(grid.modules)))  # every module, attention and MLP, was moved


def test_separate_budgets_keep_the_attention_groups() -> None:
    grid = make_grid(num_layers=3, totals={"attn": 4, "mlp": 64}, unit_params={"attn": 80, "mlp": 10},
                     keep=0.5, steps={"attn": 1, "mlp": 8}, radius=2, joint=False)  # fmt: skip
    rng = np.random.default_rng(2)
    attn = [i for i, m in enumerate(grid.modules) if m.kind == "attn"]
    parent = list(grid.target)
    for _ in range(200):
        child = level_switch(rng, parent, grid)
        assert grid.on_budget(child) and sum(child[i] for i in attn) == sum(grid.target[i] for i in attn)
        parent = child


def test_pair_count_is_biased_towards_one() -> None:
    rng = np.random.default_rng(3)
    counts = np.bincount([pair_count(rng, 4) for _ in range(4000)], minlength=5)[1:]
    # P(min of two uniforms on 1..4 = k) = (9 - 2k) / 16: 7/16, 5/16, 3/16, 1/16
    np.testing.assert_allclose(counts / 4000, [7 / 16, 5 / 16, 3 / 16, 1 / 16], atol=0.03)
