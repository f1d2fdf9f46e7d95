"""The level grid of a mixture of experts in real layouts (meta-device Qwen3-30B-A3B and Mixtral-8x7B, the
defaults a user gets): every allocator and a thousand level switches meet the budget rule, and no layer
keeps fewer experts than its top-k."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from allocations import allocation_from_json, levels_of
from layouts import MOE_LAYOUTS, layout_config
from transformers import AutoModelForCausalLM

from search.mutation import level_switch
from supernet.errors import UsageError
from supernet.io.adapters import adapter_for
from supernet.space.allocators import ALLOCATORS, allocate
from supernet.space.budget import BudgetConfig, budget_grid
from supernet.space.repair import repair
from supernet.variants.config import SupernetConfig


def meta_moe(name: str):
    config = layout_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model, adapter_for(config)


class Scores:
    """Random per-unit scores in the supernet's shape (what the allocators read)."""

    def __init__(self, grid) -> None:
        gen = torch.Generator().manual_seed(0)
        self.fluctuation = {(m.layer, m.kind): torch.rand(m.total, generator=gen) for m in grid.modules}
        self.rankings = {key: s.argsort(descending=True) for key, s in self.fluctuation.items()}
        self.grid = grid


def assert_rule(grid, levels, top_k: int):
    assert grid.in_bounds(levels)
    assert grid.budget - grid.step_cost("mlp") < grid.cost(levels) <= grid.budget
    for m, lv in zip(grid.modules, levels, strict=True):
        if m.kind == "mlp":
            assert top_k <= m.units(lv) <= m.total


@pytest.mark.parametrize("name", sorted(MOE_LAYOUTS))
@pytest.mark.parametrize("kind", ["block_params", "total_params"])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])
def test_expert_grids_meet_the_rule_with_every_allocator(name: str, kind: str, keep: float) -> None:
    model, adapter = meta_moe(name)
    grid = budget_grid(model, adapter, BudgetConfig(kind=kind, keep=keep), SupernetConfig())
    assert grid.step("mlp") == 1 and grid.moe == {
        "unit": "expert",
        "experts": adapter.num_experts,
        "width": adapter.expert_width,
    }
    assert all(m.lo >= adapter.top_k for m in grid.modules if m.kind == "mlp")
    for allocator in ALLOCATORS:
        assert_rule(grid, allocate(allocator, Scores(grid), grid, keep), adapter.top_k)
    layer = grid.allocation(grid.target).to_json()["layers"][0]
    assert layer["experts_total"] == adapter.num_experts and layer["mlp_units"] == adapter.expert_width


@pytest.mark.parametrize("name", sorted(MOE_LAYOUTS))
def test_a_thousand_switches_and_repairs_keep_top_k_experts(name: str) -> None:
    model, adapter = meta_moe(name)
    grid = budget_grid(model, adapter, BudgetConfig(keep=0.5), SupernetConfig())
    rng = np.random.default_rng(0)
    parent, moved = list(grid.target), set()
    for _ in range(1000):
        child = level_switch(rng, parent, grid)
        assert_rule(grid, child, adapter.top_k)
        moved |= {grid.modules[i].kind for i, (a, b) in enumerate(zip(parent, child, strict=True)) if a != b}
        parent = child
    assert moved == set(adapter.grid_kinds)  # experts move between layers as attention (and a shared expert) do
    for _ in range(300):
        raw = [int(rng.integers(0, m.top + 1)) for m in grid.modules]
        assert_rule(grid, repair(grid, raw, rng.random(len(raw)).tolist()), adapter.top_k)


def test_a_flops_budget_is_refused_for_a_mixture() -> None:
    model, adapter = meta_moe("mixtral-8x7b")
    with pytest.raises(UsageError, match="budget.kind=active_params"):
        budget_grid(model, adapter, BudgetConfig(kind="flops", keep=0.5), SupernetConfig())


def test_expert_allocations_round_trip_and_read_as_experts() -> None:
    from search.app.allocation_view import module_units

    model, adapter = meta_moe("qwen3-30b-a3b")
    grid = budget_grid(model, adapter, BudgetConfig(keep=0.5), SupernetConfig())
    data = grid.allocation(grid.target).to_json()
    assert allocation_from_json(data).to_json() == data
    assert levels_of(grid, allocation_from_json(data)) == list(grid.target)
    entry = data["layers"][0]
    assert module_units(data, entry, "mlp") == (entry["experts"], 128) and module_units(data, entry, "attn")[1] == 4
    dense_grid = budget_grid(*meta_llama(), BudgetConfig(keep=0.5), SupernetConfig())
    assert "experts" not in dense_grid.allocation(dense_grid.target).to_json()["layers"][0]


def meta_llama():
    config = layout_config("llama-3.2-1b")
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model, adapter_for(config)


@pytest.mark.parametrize("name", sorted(MOE_LAYOUTS))
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])
def test_expert_channel_grids_meet_an_active_params_budget(name: str, keep: float) -> None:
    """Channel units under budget.kind=active_params: a channel costs 3 H k (its top-k experts), and every
    allocator and level switch meets the budget rule counted that way."""
    config = layout_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    adapter = adapter_for(config, expert_unit="channel")
    grid = budget_grid(
        model, adapter, BudgetConfig(kind="active_params", keep=keep), SupernetConfig(expert_unit="channel")
    )
    assert (
        grid.costs["mlp"] == 3 * config.hidden_size * adapter.top_k
        and grid.step("mlp") == SupernetConfig().channel_quantum
    )
    for allocator in ALLOCATORS:
        assert_rule(grid, allocate(allocator, Scores(grid), grid, keep), 0)
    rng = np.random.default_rng(0)
    parent = list(grid.target)
    for _ in range(200):
        parent = level_switch(rng, parent, grid)
        assert_rule(grid, parent, 0)
    layer = grid.allocation(grid.target).to_json()["layers"][0]
    assert (
        layer["experts"] == layer["experts_total"] == adapter.num_experts and layer["mlp_units"] < adapter.expert_width
    )


def test_an_active_params_budget_with_whole_experts_is_refused() -> None:
    model, adapter = meta_moe("qwen3-30b-a3b")
    with pytest.raises(UsageError, match="supernet.expert_unit=channel"):
        budget_grid(model, adapter, BudgetConfig(kind="active_params", keep=0.5), SupernetConfig())
