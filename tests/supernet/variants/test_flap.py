"""FLAP's own method as the baseline: one global threshold over standardised fluctuation, any width from
none to dense, FLAP's units and bias; on budget on real layouts; installs and exports exactly."""

from __future__ import annotations

import pytest
import torch
from layouts import LAYOUTS, layout_config

from supernet.io.adapters import adapter_for
from supernet.io.export import materialize
from supernet.space.flap import flap_levels, global_counts
from supernet.space.grids import supernet_grid
from supernet.variants.build import build_supernet
from supernet.variants.config import SupernetConfig
from supernet.variants.criteria import ranking
from supernet.variants.flap_baseline import flap_baseline
from supernet.variants.switch import Switcher, kept_units


def random_fluctuation(grid, seed: int = 0, power: float = 3.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {(m.layer, m.kind): torch.rand(m.total, generator=g, dtype=torch.float64) ** power for m in grid.modules}


@pytest.mark.parametrize("name", list(LAYOUTS))
@pytest.mark.parametrize("keep", [0.3, 0.5, 0.7])
def test_flap_allocation_meets_the_budget_rule_on_real_layouts(name: str, keep: float) -> None:
    adapter = adapter_for(layout_config(name, layers=8))
    grid = supernet_grid(adapter, keep, SupernetConfig())
    full, levels, counts = flap_levels(random_fluctuation(grid), grid)
    assert full.on_budget(levels) and full.budget == grid.budget
    for m, lv, count in zip(full.modules, levels, counts, strict=True):  # the nearest level, unless repaired
        assert abs(m.units(lv) - count) <= m.step * (1 + m.top)  # sanity: a level of this module
    # most modules sit at FLAP's own count rounded to the step: the repair moves few
    exact = sum(1 for m, lv, c in zip(full.modules, levels, counts, strict=True) if abs(m.units(lv) - c) < m.step)
    assert exact >= len(levels) - 4


def test_flap_allocation_is_not_clipped_to_the_search_radius() -> None:
    """A module with 8 tied high units over 56 tied low ones has z = -0.38 for the 56, under the global
    threshold (a little under 0 with the other modules' uniform scores): FLAP keeps few more than its 8
    channels, below what the
    search's radius allows (the grid-clipped allocator could not)."""
    from transformers import LlamaConfig

    adapter = adapter_for(LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                                      num_key_value_heads=2, head_dim=8))  # fmt: skip
    grid = supernet_grid(adapter, 0.5, SupernetConfig(radius=1))
    fluctuation = random_fluctuation(grid, power=1.0)
    skewed = (1, "mlp")
    fluctuation[skewed] = torch.zeros(64, dtype=torch.float64)
    fluctuation[skewed][:8] = 1.0
    full, levels, counts = flap_levels(fluctuation, grid)
    i = next(i for i, m in enumerate(grid.modules) if (m.layer, m.kind) == skewed)
    m = grid.modules[i]
    assert counts[i] < m.lo * m.step and levels[i] < m.lo
    assert full.on_budget(levels)


def test_global_threshold_keeps_the_highest_z_units_first(tiny) -> None:
    _, adapter = tiny
    grid = supernet_grid(adapter, 0.5, SupernetConfig())
    fluctuation = random_fluctuation(grid, seed=3)
    counts, zs = global_counts(fluctuation, grid)
    threshold = min(float(z.sort(descending=True).values[c - 1]) for z, c in zip(zs, counts, strict=True) if c)
    for z, c in zip(zs, counts, strict=True):
        assert int((z > threshold).sum()) <= c  # every unit above the global threshold is kept


def test_baseline_keeps_flaps_units_with_flaps_bias_and_exports_exactly(tiny, calib_tokens) -> None:
    model, adapter = tiny
    cfg = SupernetConfig(criterion="magnitude", compensation="none", radius=1)
    grid = supernet_grid(adapter, 0.5, cfg)
    net = build_supernet(model, adapter, calib_tokens, cfg, grid, use_cache=False, progress=False)
    switcher = Switcher(model, adapter)
    baseline = flap_baseline(net, switcher)
    assert baseline.grid.on_budget(baseline.levels)
    assert set(baseline.approximated) >= {"rule", "steps", "units_moved", "modules_moved", "exact_units_cost"}
    for m, lv in zip(baseline.grid.modules, baseline.levels, strict=True):
        key = (m.layer, m.kind)
        variant = baseline.variants[key]
        if m.units(lv) == m.total:
            assert variant is None
            continue
        expected = kept_units(ranking(net.fluctuation[key], adapter.unit_step(m.kind)), m.units(lv))
        assert torch.equal(variant.units, expected)  # FLAP's units, not the magnitude criterion's
        weight = switcher.dense_params[key][adapter.output_projection(m.kind)][0].double()
        removed = torch.ones(weight.shape[1], dtype=torch.bool)
        removed[adapter.output_columns(expected, m.kind)] = False
        torch.testing.assert_close(variant.out_bias.double(), weight[:, removed] @ net.means[key].double()[removed],
                                   rtol=1e-5, atol=1e-6)  # fmt: skip
    baseline.install(switcher)
    live = model(calib_tokens).logits
    assert (live - materialize(model, switcher.shapes())(calib_tokens).logits).abs().max().item() <= 1e-4


def test_a_cached_supernet_gives_the_same_flap_baseline(tiny, calib_tokens, tmp_path) -> None:
    """Scores survive the cache bit for bit, so the baseline of a rerun is the baseline of the first run."""
    model, adapter = tiny
    cfg = SupernetConfig(criterion="flap", compensation="bias")
    grid = supernet_grid(adapter, 0.5, cfg)
    fresh = build_supernet(model, adapter, calib_tokens, cfg, grid, cache_dir=tmp_path, progress=False)
    cached = build_supernet(model, adapter, calib_tokens, cfg, grid, cache_dir=tmp_path, progress=False)
    assert cached.from_cache and not fresh.from_cache
    assert all(torch.equal(fresh.fluctuation[k], cached.fluctuation[k]) for k in fresh.fluctuation)
    switcher = Switcher(model, adapter)
    a, b = flap_baseline(fresh, switcher), flap_baseline(cached, switcher)
    assert a.levels == b.levels
    for key, variant in a.variants.items():
        other = b.variants[key]
        assert (variant is None) == (other is None)
        if variant is not None:
            assert torch.equal(variant.units, other.units) and torch.equal(variant.out_bias, other.out_bias)
