"""The level grid on the layouts of real checkpoints (meta-device models from their configs), with the
defaults a user gets: it builds, every allocator and every sampler's proposal meets the budget rule,
and every MLP may range over a wide share of its channels."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from layouts import REAL_LAYOUTS, layout_config
from transformers import AutoModelForCausalLM

from search.mutation import level_switch
from supernet.errors import UsageError
from supernet.io.adapters import adapter_for
from supernet.space.allocators import ALLOCATORS, allocate
from supernet.space.budget import BudgetConfig, budget_grid
from supernet.space.params import block_params, count_params
from supernet.space.repair import repair
from supernet.variants.build import Supernet
from supernet.variants.config import SupernetConfig

KINDS = ("block_params", "total_params", "flops")


def meta_model(name: str):
    config = layout_config(name)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return model, adapter_for(config)


def random_scores(grid) -> Supernet:
    """A supernet holding only FLAP scores (what flap_global reads), random per unit."""
    net = Supernet(grid, "flap", "none")
    g = torch.Generator().manual_seed(0)
    for m in grid.modules:
        net.fluctuation[m.layer, m.kind] = torch.rand(m.total, generator=g, dtype=torch.float64)
    return net


def assert_rule(grid, levels):
    assert grid.in_bounds(levels)
    assert grid.budget - grid.step_cost("mlp") < grid.cost(levels) <= grid.budget


@pytest.fixture(scope="module", params=sorted(REAL_LAYOUTS))
def layout(request):
    return request.param, *meta_model(request.param)


# the default budgets with no grid: a whole-model budget at or below the parameters no unit owns (Gemma-3-1B's
# 262144 x 1152 embedding alone is 30.2% of its parameters)
REFUSED = {("gemma-3-1b", "total_params", 0.3)}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])
def test_defaults_build_a_grid_every_allocator_meets(layout, kind, keep):
    name, model, adapter = layout
    budget = BudgetConfig(kind=kind, keep=keep)
    total = count_params(model)
    unowned = total - adapter.geometry.num_layers * adapter.block_unit_params()
    assert total - block_params(model, adapter) <= unowned < total, name  # embeddings, head: no unit owns them
    refused = kind == "total_params" and keep * total <= unowned
    assert refused == ((name, kind, keep) in REFUSED), f"{name}: no unit owns {unowned / total:.3f} of it"
    if refused:
        reason = f"budget.keep={keep} of all {total} parameters is below the {unowned} that no unit owns"
        with pytest.raises(UsageError, match=re.escape(reason)):
            budget_grid(model, adapter, budget, SupernetConfig())
    else:
        grid = budget_grid(model, adapter, budget, SupernetConfig())
        assert grid.joint
        net = random_scores(grid)
        for allocator in ALLOCATORS:
            assert_rule(grid, allocate(allocator, net, grid, keep))
        for m in grid.modules:
            if m.kind == "mlp":
                assert m.units(m.hi) - m.units(m.lo) >= 0.25 * m.total, f"{name}: {m}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_thousand_proposals_of_every_sampler_meet_the_rule(layout, kind):
    name, model, adapter = layout
    grid = budget_grid(model, adapter, BudgetConfig(kind=kind, keep=0.5), SupernetConfig())
    rng = np.random.default_rng(0)
    parent, moved = list(grid.target), set()
    for _ in range(1000):  # evo: chained level switches
        child = level_switch(rng, parent, grid)
        assert_rule(grid, child)
        moved |= {i for i, (a, b) in enumerate(zip(parent, child, strict=True)) if a != b}
        parent = child
    assert {grid.modules[i].kind for i in moved} == {"attn", "mlp"}
    for _ in range(1000):  # tpe, cmaes, nsga2/3, random: any point of the box, repaired onto the budget
        raw = [int(rng.integers(m.lo, m.hi + 1)) for m in grid.modules]
        assert_rule(grid, repair(grid, raw, rng.random(len(raw)).tolist()))


def test_depth_linear_spreads_the_mlp_by_a_fifth_of_the_module(layout):
    name, model, adapter = layout
    grid = budget_grid(model, adapter, BudgetConfig(keep=0.5), SupernetConfig())
    levels = allocate("depth_linear", None, grid, 0.5)
    allocation = grid.allocation(levels)
    first, last = allocation.layers[0], allocation.layers[-1]
    assert abs(first.mlp_units - last.mlp_units - 0.2 * first.mlp_units_total) <= 2 * grid.step("mlp")


@pytest.mark.parametrize("name", sorted(REAL_LAYOUTS))
def test_depth_linear_on_two_layers_differs_by_a_fifth(name):
    config = layout_config(name, layers=2)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    grid = budget_grid(model, adapter_for(config), BudgetConfig(keep=0.5), SupernetConfig())
    first, last = grid.allocation(allocate("depth_linear", None, grid, 0.5)).layers
    assert abs(first.mlp_units - last.mlp_units - 0.2 * first.mlp_units_total) <= 2 * grid.step("mlp")


@pytest.mark.parametrize("kind", ["block_params", "flops"])
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])
def test_head_units_meet_the_rule_on_every_layout(layout, kind, keep):
    name, model, _ = layout
    adapter = adapter_for(model.config, attn_unit="head")
    grid = budget_grid(model, adapter, BudgetConfig(kind=kind, keep=keep), SupernetConfig(attn_unit="head"))
    for allocator in ALLOCATORS:
        assert_rule(grid, allocate(allocator, random_scores(grid), grid, keep))
    rng = np.random.default_rng(0)
    parent = list(grid.target)
    for _ in range(200):
        parent = level_switch(rng, parent, grid)
        assert_rule(grid, parent)
    attn = next(m for m in grid.modules if m.kind == "attn")
    assert attn.step == adapter.geometry.num_kv_heads and attn.total == adapter.geometry.num_heads, name
