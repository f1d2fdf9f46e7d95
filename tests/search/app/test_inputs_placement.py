"""``placement.device_map=auto``: load_inputs spreads the model over the visible devices (two "cpu" groups here,
standing for two GPUs); ``none`` leaves it whole."""

from __future__ import annotations

from typing import TYPE_CHECKING

import search.app.inputs as inputs
from search.app.config import RunConfig
from supernet.io.loading import ModelConfig
from supernet.io.placement import PlacementConfig

if TYPE_CHECKING:
    import pytest


def load(cfg: RunConfig):
    return inputs.load_inputs(cfg.model, cfg.data, device=cfg.device, attn_unit="group", seed=0, progress=False,
                              placement=cfg.placement).model  # fmt: skip


def test_auto_spreads_over_the_visible_devices(tiny_reference_dir, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inputs, "visible_devices", lambda device: [device, device])
    spread = load(RunConfig(model=ModelConfig(reference="tiny"), placement=PlacementConfig(device_map="auto")))
    assert set(spread.hf_device_map.values()) == {"cpu"} and len(spread.hf_device_map) > 1  # two groups
    assert all(hasattr(layer, "_hf_hook") for layer in spread.model.layers)
    whole = load(RunConfig(model=ModelConfig(reference="tiny")))
    assert not hasattr(whole, "hf_device_map")
