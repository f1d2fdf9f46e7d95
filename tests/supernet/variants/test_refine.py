"""Coarse-to-fine: the refined supernet equals a fresh build on the refined grid, and rebuilds only
what the coarse one lacked."""

from __future__ import annotations

import pytest
import torch

from supernet.space.grids import refine_grid, supernet_grid
from supernet.space.repair import repair
from supernet.variants.build import build_supernet
from supernet.variants.config import SupernetConfig
from supernet.variants.refine import carry_over, refine_supernet


@pytest.mark.parametrize(
    ("criterion", "compensation"),
    [("magnitude", "none"), ("flap", "bias"), ("wanda_sp", "refit"), ("obs", "refit_intercept")],
)
def test_refined_supernet_equals_a_fresh_build(tiny, calib_tokens, criterion, compensation):
    model, adapter = tiny
    cfg = SupernetConfig(criterion=criterion, compensation=compensation, channel_quantum=4, radius=2,
                         level_fraction=0.25)  # fmt: skip
    grid = supernet_grid(adapter, 0.5, cfg)
    coarse = build_supernet(model, adapter, calib_tokens, cfg, grid, use_cache=False, progress=False)
    best = repair(grid, [m.hi if m.kind == "mlp" and m.layer == 0 else m.lo for m in grid.modules])
    fine_grid = refine_grid(grid, best, radius=2)
    assert (grid.stride("mlp"), fine_grid.stride("mlp")) == (4, 2)
    refined, rebuilt = refine_supernet(coarse, fine_grid, model=model, adapter=adapter, calib_tokens=calib_tokens,
                                       cfg=cfg, progress=False)  # fmt: skip
    fresh = build_supernet(model, adapter, calib_tokens, cfg, fine_grid, use_cache=False, progress=False)
    assert refined.rankings.keys() == fresh.rankings.keys()
    for key in fresh.rankings:
        assert torch.equal(refined.rankings[key], fresh.rankings[key])
    assert refined.biases.keys() == fresh.biases.keys() and refined.weights.keys() == fresh.weights.keys()
    for got, want in ((refined.biases, fresh.biases), (refined.weights, fresh.weights)):
        for key in want:
            torch.testing.assert_close(got[key], want[key])
    _, missing = carry_over(coarse, fine_grid)
    assert rebuilt == sum(len(levels) for levels in missing.values())
    if compensation == "none":
        assert rebuilt == 0
    else:  # the anchors half-way between the coarse ones were not compensated; the rest was reused
        reused = len(fresh.biases) + len(fresh.weights) - rebuilt
        assert rebuilt > 0 and reused > 0
