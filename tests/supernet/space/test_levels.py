"""Level grid: the budget rule (never above, below by less than one MLP step), repair, pair switches,
coarse-to-fine refinement."""

from __future__ import annotations

import random

import pytest

from supernet.errors import UsageError
from supernet.space.grids import make_grid, refine_grid, supernet_grid
from supernet.space.moves import switch_pair
from supernet.space.repair import repair
from supernet.variants.config import SupernetConfig


def foreign_grid(**overrides):
    """A layout where a GQA group costs no whole number of MLP channels (80 / 6 = 13.3)."""
    fields = dict(num_layers=4, totals={"attn": 4, "mlp": 64}, unit_params={"attn": 80, "mlp": 6}, keep=0.5,
                  steps={"attn": 1, "mlp": 4}, radius=4)  # fmt: skip
    return make_grid(**{**fields, **overrides})


def window(grid, levels):
    return grid.budget - grid.step_cost("mlp") < grid.cost(levels) <= grid.budget


@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7, 1.0])
def test_target_meets_the_budget_rule(joint, keep):
    grid = foreign_grid(keep=keep, joint=joint)
    assert grid.on_budget(grid.target) and window(grid, grid.target)
    assert grid.budget == int(keep * 4 * (4 * 80 + 64 * 6))
    if keep == 1.0:
        assert grid.cost(grid.target) == grid.budget  # the dense model: exactly on target


def test_a_coarse_level_is_an_eighth_of_the_module_and_the_range_is_wide():
    grid = foreign_grid()
    mlp = [m for m in grid.modules if m.kind == "mlp"]
    assert {m.stride for m in mlp} == {2}  # 64 channels / 8 = 8 = 2 steps of 4
    for m in mlp:
        assert m.units(m.hi) - m.units(m.lo) >= 0.5 * m.total
        assert m.anchors() == sorted({m.lo, m.hi, *range(m.centre % 2, m.hi + 1, 2)} & set(range(m.lo, m.hi + 1)))


def test_a_width_not_divisible_by_the_step_keeps_the_dense_module_as_top_level():
    grid = foreign_grid(totals={"attn": 4, "mlp": 66}, keep=1.0)
    assert all(m.top == (17 if m.kind == "mlp" else 4) for m in grid.modules)
    assert list(grid.target) == [m.top for m in grid.modules] and grid.cost(grid.target) == grid.budget
    m = grid.modules[1]
    assert [m.units(lv) for lv in (m.top - 1, m.top)] == [64, 66]


def test_repair_is_on_budget_and_deterministic():
    rng = random.Random(0)
    for joint in (True, False):
        grid = foreign_grid(joint=joint)
        for _ in range(200):
            levels = [rng.randint(m.lo - 2, m.hi + 2) for m in grid.modules]
            priority = [rng.random() for _ in grid.modules]
            fixed = repair(grid, levels, priority)
            assert grid.on_budget(fixed) and window(grid, fixed) or not joint
            assert fixed == repair(grid, levels, priority)
        assert repair(grid, list(grid.target)) == list(grid.target)


def test_repair_takes_from_the_lowest_priority_and_gives_to_the_highest():
    grid = foreign_grid()
    levels = list(grid.target)
    levels[1] += 1  # layer 0's MLP one step over budget
    priority = [0.0] * len(levels)
    priority[1], priority[5] = 5.0, -1.0  # layer 0's MLP is kept, layer 2's pays
    fixed = repair(grid, levels, priority)
    assert fixed[1] == levels[1] and fixed[5] == levels[5] - 1
    levels = list(grid.target)
    levels[3] -= 2  # under budget: the most important module that fits gains
    fixed = repair(grid, levels, priority)
    assert fixed[1] > grid.target[1] and grid.on_budget(fixed)


def test_a_pair_switch_pays_attention_in_mlp_quanta():
    grid = foreign_grid()
    levels = list(grid.target)
    attn, mlp = 0, 3  # layer 0's attention up one group, layer 1's MLP pays
    child = switch_pair(grid, levels, attn, mlp)
    assert child[attn] == levels[attn] + 1 and window(grid, child)
    paid, room = levels[mlp] - child[mlp], grid.budget - grid.cost(levels)
    assert 80 - 24 * paid <= room < 80 - 24 * (paid - 1)  # the fewest quanta that pay for the group
    assert [lv for i, lv in enumerate(child) if i not in (attn, mlp)] == [
        lv for i, lv in enumerate(levels) if i not in (attn, mlp)
    ]
    assert switch_pair(grid, levels, attn, attn) is None


def test_separate_budgets_keep_attention_as_the_target():
    grid = foreign_grid(joint=False)
    levels = list(grid.target)
    assert switch_pair(grid, levels, 0, 3) is None  # attention cannot buy MLP channels
    attn = [i for i, m in enumerate(grid.modules) if m.kind == "attn"]
    child = switch_pair(grid, levels, attn[0], attn[1])
    assert child is not None and sum(child[i] for i in attn) == sum(levels[i] for i in attn)


def test_an_unreachable_budget_is_a_usage_error():
    with pytest.raises(UsageError, match="cannot be reached"):
        foreign_grid(keep=0.001)
    with pytest.raises(UsageError, match=r"outside \(0, 1\]"):
        foreign_grid(keep=1.5)


def test_refined_grid_halves_the_coarse_level_and_keeps_the_budget():
    grid = foreign_grid(totals={"attn": 4, "mlp": 128})
    assert grid.stride("mlp") == 4
    rng = random.Random(0)
    best = repair(grid, [rng.randint(m.lo, m.hi) for m in grid.modules])
    fine = refine_grid(grid, best, radius=2)
    assert fine.stride("mlp") == 2 and fine.stride("attn") == 1 and fine.budget == grid.budget
    assert list(fine.target) == best and fine.on_budget(best)
    for m, c in zip(fine.modules, best, strict=True):
        assert m.centre == c and m.hi - m.lo <= 4 * m.stride and c in m.anchors()
    for _ in range(50):
        assert fine.on_budget(repair(fine, [rng.randint(m.lo, m.hi) for m in fine.modules]))
    for _ in range(3):
        fine = refine_grid(fine, fine.target, radius=2)
    assert fine.stride("mlp") == 1  # halving stops at one step


@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])
def test_tiny_model_grid_is_on_budget(tiny, keep):
    _, adapter = tiny
    grid = supernet_grid(adapter, keep, SupernetConfig())
    assert grid.on_budget(grid.target)
    for m in grid.modules:
        assert m.units(m.hi) - m.units(m.lo) >= m.total // 2


def test_a_quantum_wider_than_the_mlp_is_a_usage_error(tiny):
    _, adapter = tiny
    with pytest.raises(UsageError, match="channel_quantum=128"):
        supernet_grid(adapter, 0.5, SupernetConfig(channel_quantum=128))
