"""The built supernet: nested variants, in-place switching equals the materialised model for every
criterion x compensation, only changed modules are touched."""

from __future__ import annotations

import itertools

import pytest
import torch

from supernet.io.adapters import adapter_for
from supernet.io.export import materialize
from supernet.space.allocators import allocate
from supernet.space.grids import supernet_grid
from supernet.variants.build import build_supernet
from supernet.variants.compensation import COMPENSATIONS
from supernet.variants.config import OBS_COMPENSATIONS, SupernetConfig
from supernet.variants.criteria import CRITERIA
from supernet.variants.switch import Switcher


def built(tiny, tokens, **fields):
    model, adapter = tiny
    cfg = SupernetConfig(**{"joint_budget": False, "radius": 2, **fields})
    adapter = adapter_for(model.config, attn_unit=cfg.attn_unit)
    grid = supernet_grid(adapter, 0.5, cfg)
    return build_supernet(model, adapter, tokens, cfg, grid, use_cache=False, progress=False)


@pytest.mark.parametrize("attn_unit", ["group", "head"])
@pytest.mark.parametrize(
    ("criterion", "compensation"),
    [(a, b) for a, b in itertools.product(CRITERIA, COMPENSATIONS) if a != "obs" or b in OBS_COMPENSATIONS],
)
def test_in_place_equals_materialised(tiny, calib_tokens, criterion, compensation, attn_unit):
    model, _ = tiny
    adapter = adapter_for(model.config, attn_unit=attn_unit)
    net = built(tiny, calib_tokens, criterion=criterion, compensation=compensation, attn_unit=attn_unit)
    switcher = Switcher(model, adapter)
    for name in ("uniform", "flap_global", "depth_linear"):
        levels = allocate(name, net, net.grid, 0.5)
        net.apply(switcher, levels)
        live = model(calib_tokens).logits
        exported = materialize(model, switcher.shapes())(calib_tokens).logits
        assert (live - exported).abs().max().item() <= 1e-4, f"{criterion}+{compensation} {name}"
    lowest = [m.lo for m in net.grid.modules]  # some modules removed entirely (level 0)
    net.apply(switcher, lowest)
    assert (model(calib_tokens).logits - materialize(model, switcher.shapes())(calib_tokens).logits).abs().max() <= 1e-4


def test_variants_are_nested_and_full_level_is_dense(tiny, calib_tokens):
    net = built(tiny, calib_tokens, criterion="flap", compensation="bias")
    for m in net.grid.modules:
        previous: set[int] = set()
        for level in range(m.lo, m.hi + 1):
            variant = net.variant(m.layer, m.kind, level)
            units = set(range(m.total)) if variant is None else set(variant.units.tolist())
            assert len(units) == m.units(level) and previous <= units
            previous = units
            if m.units(level) == m.total:
                assert variant is None
    assert net.variant(0, "attn", net.grid.modules[0].lo) is net.variant(0, "attn", net.grid.modules[0].lo)


def test_apply_touches_only_changed_modules(tiny, calib_tokens):
    model, adapter = tiny
    net = built(tiny, calib_tokens, criterion="wanda_sp")
    switcher = Switcher(model, adapter)
    levels = list(net.grid.target)
    assert net.apply(switcher, levels) == len(levels)
    assert net.apply(switcher, levels) == 0
    up = next(i for i, m in enumerate(net.grid.modules) if m.kind == "mlp" and levels[i] < m.hi)
    down = next(i for i, m in enumerate(net.grid.modules) if m.kind == "mlp" and levels[i] > m.lo and i != up)
    levels[up] += 1
    levels[down] -= 1
    assert net.apply(switcher, levels) == 2


def test_refit_at_target_lowers_the_layer_output_error(tiny, calib_tokens):
    """At the target allocation, refit's logits are closer to the dense model's than none's."""
    model, adapter = tiny
    dense = model(calib_tokens).logits
    errors = {}
    for compensation in ("none", "refit"):
        net = built(tiny, calib_tokens, criterion="wanda_sp", compensation=compensation, store_dtype="float32")
        switcher = Switcher(model, adapter)
        net.apply(switcher, list(net.grid.target))
        errors[compensation] = (model(calib_tokens).logits - dense).pow(2).mean().item()
        switcher.apply({key: None for key in switcher.current})
    assert errors["refit"] < errors["none"]


def test_expected_propagation_changes_later_layers_only(tiny, calib_tokens):
    dense = built(tiny, calib_tokens, criterion="obs", propagate="dense")
    expected = built(tiny, calib_tokens, criterion="obs", propagate="expected")
    assert torch.equal(dense.rankings[0, "mlp"], expected.rankings[0, "mlp"])
    assert torch.equal(dense.fluctuation[0, "attn"], expected.fluctuation[0, "attn"])
    assert not torch.equal(dense.fluctuation[1, "attn"], expected.fluctuation[1, "attn"])


def between_anchors(net) -> list[int]:
    """Levels in grid order that are no anchor where the module allows (else its target)."""
    levels = []
    for m, target in zip(net.grid.modules, net.grid.target, strict=True):
        between = [lv for lv in range(m.lo, m.hi + 1) if lv not in m.anchors()]
        levels.append(between[len(between) // 2] if between else target)
    return levels


@pytest.mark.parametrize("compensation", sorted(COMPENSATIONS))
def test_widths_between_anchors_switch_in_place_as_materialised(tiny, calib_tokens, compensation):
    model, adapter = tiny
    net = built(tiny, calib_tokens, criterion="flap", compensation=compensation, channel_quantum=4,
                level_fraction=0.25)  # fmt: skip
    levels = between_anchors(net)
    assert any(lv not in m.anchors() for m, lv in zip(net.grid.modules, levels, strict=True))
    switcher = Switcher(model, adapter)
    net.apply(switcher, levels)
    live = model(calib_tokens).logits
    assert (live - materialize(model, switcher.shapes())(calib_tokens).logits).abs().max().item() <= 1e-4
    widths = [layer["intermediate_size"] for layer in switcher.shapes()]
    assert widths == [net.grid.modules[i].units(levels[i]) for i in range(1, len(levels), 2)]


def test_bias_between_anchors_is_flaps_bias_of_that_width(tiny, calib_tokens):
    """A width between anchors gets exactly the FLAP bias a supernet compensated at every width gives."""
    model, adapter = tiny
    coarse = built(tiny, calib_tokens, criterion="flap", compensation="bias", channel_quantum=4, level_fraction=0.25)
    every = built(tiny, calib_tokens, criterion="flap", compensation="bias", channel_quantum=4, level_fraction=0.01,
                  radius=16)  # fmt: skip
    assert [m.stride for m in every.grid.modules] == [1] * len(every.grid.modules)
    levels = between_anchors(coarse)
    biases = []
    for net in (coarse, every):
        switcher = Switcher(model, adapter)
        net.apply(switcher, levels)
        biases.append([adapter.output_linear(layer, "mlp").bias for layer in switcher.layers])
        switcher.apply(dict.fromkeys(switcher.current))
    for got, want in zip(*biases, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_head_units_keep_as_many_query_heads_in_every_group(tiny, calib_tokens):
    model, _ = tiny
    net = built(tiny, calib_tokens, criterion="flap", attn_unit="head", joint_budget=True)
    for m in net.grid.modules:
        if m.kind != "attn":
            continue
        assert (m.step, m.total) == (2, 4)  # one query head of each of the 2 groups per level
        for level in range(max(m.lo, 1), m.hi + 1):
            heads = net.variant(m.layer, "attn", level)
            heads = torch.arange(4) if heads is None else heads.units
            assert torch.bincount(heads // 2, minlength=2).tolist() == [level, level]
