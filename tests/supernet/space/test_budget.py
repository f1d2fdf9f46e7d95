"""Budgets: total parameters and FLOPs turn into exact level grids; a unit's FLOPs are counted right."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from supernet.errors import UsageError
from supernet.space.allocators import ALLOCATORS, allocate
from supernet.space.budget import BudgetConfig, budget_grid, unit_flops, unit_keep
from supernet.space.params import count_params
from supernet.variants.config import SupernetConfig


def linear_flops(module: torch.nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        module(x)
    return counter.get_total_flops()


def test_mlp_channel_flops_match_torch_counter(tiny):
    model, adapter = tiny
    seq = 16
    mlp = adapter.mlp(adapter.decoder_layers(model)[0])
    x = torch.randn(1, seq, adapter.geometry.hidden)
    assert linear_flops(mlp, x) == adapter.geometry.intermediate * unit_flops(adapter, "mlp", seq)


def test_group_flops_are_its_projections_plus_causal_attention(tiny):
    model, adapter = tiny
    geo, seq = adapter.geometry, 16
    attn = adapter.attention(adapter.decoder_layers(model)[0])
    x, heads_out = torch.randn(1, seq, geo.hidden), torch.randn(1, seq, geo.num_heads * geo.head_dim)
    projections = sum(linear_flops(getattr(attn, name), x) for name in ("q_proj", "k_proj", "v_proj"))
    projections += linear_flops(attn.o_proj, heads_out)
    pairs = seq * (seq + 1) // 2  # causal query-key pairs per head
    scores = geo.num_heads * pairs * 2 * geo.head_dim * 2  # QK^T and AV, 2 FLOPs per multiply-add
    assert geo.num_kv_heads * unit_flops(adapter, "attn", seq) == projections + scores


@pytest.mark.parametrize("keep", [0.6, 0.8])
def test_total_params_budget_keeps_that_fraction_of_the_whole_model(tiny, keep):
    model, adapter = tiny
    grid = budget_grid(model, adapter, BudgetConfig(kind="total_params", keep=keep), SupernetConfig(channel_quantum=4))
    total = count_params(model)
    units = adapter.geometry.num_layers * sum(adapter.units_total(k) * adapter.unit_params(k) for k in ("attn", "mlp"))
    net = _net(model, adapter, grid)
    for name in ALLOCATORS:
        kept = total - units + grid.params(allocate(name, None if name == "uniform" else net, grid, keep))
        assert keep * total - grid.step_cost("mlp") - 1 < kept <= keep * total + 1  # + 1: float rounding


def test_total_params_below_the_fixed_part_is_a_usage_error(tiny):
    model, adapter = tiny
    with pytest.raises(UsageError, match="no unit owns"):
        unit_keep(model, adapter, BudgetConfig(kind="total_params", keep=0.05))


def test_flops_budget_meets_the_rule_for_every_allocator(tiny, calib_tokens):
    model, adapter = tiny
    budget = BudgetConfig(kind="flops", keep=0.5, seq_len=32)
    grid = budget_grid(model, adapter, budget, SupernetConfig(channel_quantum=4))
    assert grid.unit_cost == {k: unit_flops(adapter, k, 32) for k in ("attn", "mlp")}
    assert grid.joint and grid.unit_cost["attn"] % grid.unit_cost["mlp"]  # a group is no whole number of channels
    dense = sum(m.total * grid.costs[m.kind] for m in grid.modules)
    assert grid.budget == dense // 2
    net = _net(model, adapter, grid, calib_tokens)
    for name in ALLOCATORS:
        cost = grid.cost(allocate(name, net, grid, 0.5))
        assert grid.budget - grid.step_cost("mlp") < cost <= grid.budget


def _net(model, adapter, grid, calib_tokens=None):
    from supernet.variants.build import build_supernet

    tokens = calib_tokens if calib_tokens is not None else torch.randint(0, 97, (4, 16))
    return build_supernet(model, adapter, tokens, SupernetConfig(channel_quantum=4), grid, use_cache=False,
                          progress=False)  # fmt: skip
