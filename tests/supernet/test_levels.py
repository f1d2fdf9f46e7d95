"""Level grid of the supernet config: every level's parameter count; repair lands exactly on budget."""

from __future__ import annotations

import random

import pytest

from supernet.build import supernet_grid
from supernet.config import SupernetConfig
from supernet.levels import make_grid, refine_grid, repair


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])
def test_every_level_meets_its_parameter_count(tiny, joint, keep):
    model, adapter = tiny
    grid = supernet_grid(adapter, keep, SupernetConfig(joint_budget=joint))
    for m in grid.modules:
        for level in range(m.lo, m.hi + 1):
            assert m.units(level) * adapter.unit_params(m.kind) == level * grid.step_params(m.kind)
    if joint:
        assert grid.step_params("attn") == grid.step_params("mlp")
    # moving one module up and another down keeps the budget
    levels = list(grid.target)
    up = next(i for i, m in enumerate(grid.modules) if levels[i] < m.hi)
    down = next(
        i
        for i, m in enumerate(grid.modules)
        if levels[i] > m.lo and i != up and (joint or m.kind == grid.modules[up].kind)
    )
    levels[up] += 1
    levels[down] -= 1
    assert grid.on_budget(levels) and grid.params(levels) == grid.params(grid.target)


@pytest.mark.parametrize("joint", [True, False])
def test_repair_is_on_budget_and_deterministic(tiny, joint):
    model, adapter = tiny
    grid = supernet_grid(adapter, 0.5, SupernetConfig(joint_budget=joint, radius=3))
    rng = random.Random(0)
    for _ in range(50):
        levels = [rng.randint(m.lo - 2, m.hi + 2) for m in grid.modules]
        priority = [rng.random() for _ in grid.modules]
        fixed = repair(grid, levels, priority)
        assert grid.on_budget(fixed)
        assert fixed == repair(grid, levels, priority)
    assert repair(grid, list(grid.target)) == list(grid.target)


def test_repair_takes_from_the_lowest_priority(tiny):
    model, adapter = tiny
    grid = supernet_grid(adapter, 0.5, SupernetConfig(radius=3))
    levels = list(grid.target)
    levels[0] = min(grid.modules[0].hi, levels[0] + 1)  # one level over budget (if it could move)
    if levels == list(grid.target):
        pytest.skip("module 0 is at its top level")
    priority = [0.0] * len(levels)
    priority[0] = 5.0
    priority[3] = -1.0
    fixed = repair(grid, levels, priority)
    assert fixed[0] == levels[0] and fixed[3] == levels[3] - 1


@pytest.mark.parametrize("keep", [0.3, 0.5])
def test_refined_grid_halves_the_step_and_keeps_the_cost(tiny, keep):
    _, adapter = tiny
    grid = supernet_grid(adapter, keep, SupernetConfig(channel_quantum=4, radius=2))  # MLP step 16 channels
    assert (grid.step("attn"), grid.step("mlp")) == (1, 16)
    rng = random.Random(0)
    levels = repair(grid, [rng.randint(m.lo, m.hi) for m in grid.modules])
    fine = refine_grid(grid, levels, radius=2, min_steps={"attn": 1, "mlp": 4})
    # one GQA group cannot halve, 16 channels can: the kinds now keep separate budgets
    assert (fine.step("attn"), fine.step("mlp"), fine.joint) == (1, 8, False)
    assert [m.units(c) for m, c in zip(fine.modules, fine.target, strict=True)] == [
        m.units(lv) for m, lv in zip(grid.modules, levels, strict=True)
    ]
    assert fine.params(fine.target) == grid.params(grid.target)
    assert all(m.lo <= c <= m.hi and m.hi - m.lo <= 4 for m, c in zip(fine.modules, fine.target, strict=True))
    # every repaired proposal of the refined grid keeps the parameters of the coarse budget
    for _ in range(20):
        proposal = repair(fine, [rng.randint(m.lo, m.hi) for m in fine.modules])
        assert fine.params(proposal) == grid.params(grid.target)
    # halving stops at the channel quantum
    steps = []
    for _ in range(3):
        fine = refine_grid(fine, fine.target, radius=2, min_steps={"attn": 1, "mlp": 4})
        steps.append(fine.step("mlp"))
    assert steps == [4, 4, 4]


def test_refined_grid_stays_joint_when_both_steps_halve():
    grid = make_grid(num_layers=3, totals={"attn": 8, "mlp": 64}, unit_params={"attn": 40, "mlp": 10},
                     keep=0.5, steps={"attn": 2, "mlp": 8}, radius=2, joint=True)  # fmt: skip
    assert grid.step("mlp") == 8  # 2 groups x 40 = 8 channels x 10
    fine = refine_grid(grid, grid.target, radius=2, min_steps={"attn": 1, "mlp": 4})
    assert (fine.step("attn"), fine.step("mlp"), fine.joint) == (1, 4, True)
    assert fine.params(fine.target) == grid.params(grid.target)
