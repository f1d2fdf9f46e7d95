"""The supernet cache: a second build reuses it without calibrating; corrupt or mismatched entries are rebuilt."""

from __future__ import annotations

import json

import pytest
import torch
from cache_entries import only_entry

from supernet.space.grids import supernet_grid
from supernet.variants import build as build_module
from supernet.variants.build import build_supernet
from supernet.variants.config import SupernetConfig


@pytest.fixture
def counted(monkeypatch):
    """Count calibration passes (wrapping strata's own function, not torch)."""
    calls = []
    original = build_module.calibrate
    monkeypatch.setattr(build_module, "calibrate", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def build(tiny, tokens, cfg, tmp_path):
    model, adapter = tiny
    grid = supernet_grid(adapter, 0.5, cfg)
    return build_supernet(model, adapter, tokens, cfg, grid, cache_dir=tmp_path, progress=False)


def same(a, b) -> None:
    assert a.rankings.keys() == b.rankings.keys()
    for key in a.rankings:
        assert torch.equal(a.rankings[key], b.rankings[key])
    assert a.biases.keys() == b.biases.keys() and a.weights.keys() == b.weights.keys()
    for key in a.biases:
        assert torch.equal(a.biases[key], b.biases[key])
    for key in a.weights:
        assert torch.equal(a.weights[key], b.weights[key])


@pytest.mark.parametrize("compensation", ["bias", "refit"])
def test_second_build_reuses_the_cache(tiny, calib_tokens, tmp_path, counted, compensation):
    cfg = SupernetConfig(criterion="flap", compensation=compensation)
    first = build(tiny, calib_tokens, cfg, tmp_path)
    second = build(tiny, calib_tokens, cfg, tmp_path)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert len(counted) == 1, "the second build calibrated again"
    assert second.cache_bytes == first.cache_bytes > 0
    same(first, second)


def test_other_config_or_tokens_get_another_entry(tiny, calib_tokens, tmp_path, counted):
    build(tiny, calib_tokens, SupernetConfig(criterion="flap"), tmp_path)
    assert not build(tiny, calib_tokens, SupernetConfig(criterion="wanda_sp"), tmp_path).from_cache
    assert not build(tiny, calib_tokens[:3], SupernetConfig(criterion="flap"), tmp_path).from_cache
    assert len(counted) == 3 and len(list(tmp_path.iterdir())) == 3


def test_corrupt_entry_is_detected_and_rebuilt(tiny, calib_tokens, tmp_path, counted, caplog):
    cfg = SupernetConfig(criterion="flap", compensation="bias")
    first = build(tiny, calib_tokens, cfg, tmp_path)
    victim = only_entry(tmp_path) / "layer1.mlp.safetensors"
    data = bytearray(victim.read_bytes())
    data[-3] ^= 0xFF  # flip bits inside a tensor
    victim.write_bytes(bytes(data))
    second = build(tiny, calib_tokens, cfg, tmp_path)
    assert not second.from_cache and len(counted) == 2
    assert "does not match its sha256" in caplog.text
    same(first, second)
    assert build(tiny, calib_tokens, cfg, tmp_path).from_cache


def test_mismatched_manifest_is_rebuilt(tiny, calib_tokens, tmp_path, counted, caplog):
    cfg = SupernetConfig(criterion="magnitude")
    build(tiny, calib_tokens, cfg, tmp_path)
    manifest = only_entry(tmp_path) / "manifest.json"
    content = json.loads(manifest.read_text())
    content["key"] = "someone-else"
    manifest.write_text(json.dumps(content))
    assert not build(tiny, calib_tokens, cfg, tmp_path).from_cache
    assert "is not" in caplog.text and len(counted) == 2


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    from supernet.io.files import default_root

    monkeypatch.setenv("STRATA_CACHE_DIR", str(tmp_path))
    assert default_root() == tmp_path / "supernet"
