"""Allocators: on the grid and exactly on budget; FLAP-global follows the standardised scores."""

from __future__ import annotations

import pytest
import torch

from supernet.errors import UsageError
from supernet.space.allocators import ALLOCATORS, allocate, depth_linear, flap_global
from supernet.space.flap import standardise
from supernet.space.grids import supernet_grid
from supernet.variants.build import Supernet
from supernet.variants.config import SupernetConfig


def fake_supernet(grid, seed: int = 0) -> Supernet:
    g = torch.Generator().manual_seed(seed)
    net = Supernet(grid, "flap", "none")
    for m in grid.modules:
        net.fluctuation[m.layer, m.kind] = torch.rand(m.total, generator=g, dtype=torch.float64)
    return net


def test_unknown_allocator_lists_the_known_ones():
    with pytest.raises(UsageError, match="uniform, flap_global, depth_linear"):
        allocate("owl", None, None, 0.5)


@pytest.mark.parametrize("name", list(ALLOCATORS))
@pytest.mark.parametrize("joint", [True, False])
@pytest.mark.parametrize("keep", [0.4, 0.6])
def test_on_budget(tiny, name, joint, keep):
    _, adapter = tiny
    grid = supernet_grid(adapter, keep, SupernetConfig(joint_budget=joint))
    for seed in range(3):
        levels = allocate(name, fake_supernet(grid, seed), grid, keep)
        assert grid.on_budget(levels) and grid.params(levels) == grid.params(grid.target)


def test_standardise():
    z = standardise(torch.tensor([1.0, 2.0, 3.0, 6.0]))
    assert abs(z.mean().item()) < 1e-12 and abs(z.std(unbiased=False).item() - 1) < 1e-12
    assert torch.equal(standardise(torch.ones(3)), torch.zeros(3, dtype=torch.float64))


def test_flap_global_gives_more_to_modules_whose_units_stand_out(tiny):
    """Module scores that are tied except for one outlier unit have low z for the rest: they lose width."""
    from transformers import LlamaConfig

    from supernet.io.adapters import adapter_for

    adapter = adapter_for(
        LlamaConfig(
            hidden_size=32,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        )
    )
    grid = supernet_grid(adapter, 0.5, SupernetConfig(joint_budget=False, radius=8))
    net = fake_supernet(grid)
    ramp = torch.linspace(0, 1, 256, dtype=torch.float64)
    net.fluctuation[0, "mlp"] = ramp  # evenly spread: half its units have z > 0
    net.fluctuation[1, "mlp"] = torch.cat([torch.zeros(255, dtype=torch.float64), torch.ones(1, dtype=torch.float64)])
    levels = flap_global(net, grid, 0.5)
    mlp = [lv for m, lv in zip(grid.modules, levels, strict=True) if m.kind == "mlp"]
    assert mlp[0] > mlp[1]


def test_depth_linear_rises_with_depth():
    from transformers import LlamaConfig

    from supernet.io.adapters import adapter_for

    adapter = adapter_for(
        LlamaConfig(
            hidden_size=32,
            intermediate_size=512,
            num_hidden_layers=6,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        )
    )
    grid = supernet_grid(adapter, 0.5, SupernetConfig(joint_budget=False))
    levels = depth_linear(None, grid, 0.5)
    mlp = [lv for m, lv in zip(grid.modules, levels, strict=True) if m.kind == "mlp"]
    assert mlp[0] > mlp[-1] and mlp == sorted(mlp, reverse=True)
