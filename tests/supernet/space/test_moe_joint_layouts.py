"""Experts and their width in one grid (``supernet.expert_unit=both``), in real layouts (meta-device
Qwen3-30B-A3B, Mixtral-8x7B, Qwen1.5-MoE-A2.7B, the defaults a user gets): the coupled cost e (3 H w + H)
(or, counting what a token uses, 3 H w min(k, e) + e H) is what the grid charges, every allocator and level
switch meets the budget rule on it, and no layer keeps fewer than top-k experts or a block it cannot run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from allocations import allocation_from_json, levels_of
from layouts import MOE_LAYOUTS, layout_config
from test_moe_layouts import Scores
from transformers import AutoModelForCausalLM

from search.mutation import level_switch
from supernet.io.adapters import adapter_for
from supernet.space.allocation import Allocation
from supernet.space.allocators import ALLOCATORS, allocate
from supernet.space.budget import BudgetConfig, budget_grid
from supernet.variants.config import SupernetConfig

BOTH = SupernetConfig(expert_unit="both")


def joint_grid(name: str, kind: str, keep: float):
    config = layout_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    adapter = adapter_for(config, expert_unit="both")
    return budget_grid(model, adapter, BudgetConfig(kind=kind, keep=keep), BOTH), adapter


def counted(allocation: Allocation, adapter, *, active: bool) -> int:
    """What the allocation costs, counted from its layers by hand (attention units, experts x width)."""
    hidden, total = adapter.geometry.hidden, 0
    for layer in allocation.layers:
        attn = layer.attn_units * adapter.unit_params("attn") + (adapter.base_params("attn") if layer.attn_units else 0)
        copies = min(adapter.top_k, layer.experts) if active else layer.experts
        total += attn + layer.experts * hidden + 3 * hidden * layer.mlp_units * copies
        total += 3 * hidden * (layer.shared_units or 0)  # Qwen2-MoE's shared expert, channel by channel
    return total


def assert_rule(grid, adapter, levels, *, active: bool) -> None:
    assert grid.in_bounds(levels)
    assert grid.budget - grid.step_cost("mlp") < grid.cost(levels) <= grid.budget
    allocation = grid.allocation(levels)
    assert grid.cost(levels) == counted(allocation, adapter, active=active)
    for layer in allocation.layers:
        assert layer.experts == 0 if layer.mlp_units == 0 else adapter.top_k <= layer.experts <= adapter.num_experts


@pytest.mark.parametrize("name", sorted(MOE_LAYOUTS))
@pytest.mark.parametrize("kind", ["block_params", "total_params", "active_params"])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])
def test_joint_grids_meet_the_rule_with_every_allocator(name: str, kind: str, keep: float) -> None:
    grid, adapter = joint_grid(name, kind, keep)
    active = kind == "active_params"
    assert grid.coupled and [m.kind for m in grid.modules[:3]] == ["attn", "mlp", "experts"]
    assert grid.step("mlp") == BOTH.channel_quantum and grid.step("experts") == 1
    assert all(m.least == adapter.top_k for m in grid.modules if m.kind == "experts")
    if name == "qwen1.5-moe-a2.7b":  # the shared expert lives in the routed block: a width of 0 would drop it
        assert all(m.least == 1 for m in grid.modules if m.kind == "mlp")
    for allocator in ALLOCATORS:
        assert_rule(grid, adapter, allocate(allocator, Scores(grid), grid, keep), active=active)
    centre = grid.allocation(grid.target).layers[0]
    if active:  # experts cost a token only their router rows: the centre keeps them all and narrows them
        assert centre.experts == adapter.num_experts and centre.mlp_units < adapter.expert_width
    else:  # the centre is uniform expert pruning: keep of the experts, each as wide as the budget allows
        assert centre.experts < adapter.num_experts


@pytest.mark.parametrize("name", sorted(MOE_LAYOUTS))
def test_switches_trade_experts_for_width_on_budget(name: str) -> None:
    grid, adapter = joint_grid(name, "block_params", 0.5)
    rng = np.random.default_rng(0)
    parent, moved = list(grid.target), set()
    for _ in range(500):
        child = level_switch(rng, parent, grid)
        assert_rule(grid, adapter, child, active=False)
        moved |= {grid.modules[i].kind for i, (a, b) in enumerate(zip(parent, child, strict=True)) if a != b}
        parent = child
    assert moved == set(adapter.grid_kinds)  # attention, widths, expert counts (and a shared expert) all move
    data = grid.allocation(parent).to_json()
    assert levels_of(grid, allocation_from_json(data)) == parent and "mlp_unit" not in data
