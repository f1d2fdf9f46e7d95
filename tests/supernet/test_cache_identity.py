"""The cache key of a model loaded from a directory: its weight files' identity stands for the weights, so
a second run reads no weight byte to find its entry; rewriting a weight changes the key."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file, save_file

from supernet import cache
from supernet.build import build_supernet, supernet_grid
from supernet.config import SupernetConfig
from supernet.loading import load_model

CFG = SupernetConfig(criterion="flap", compensation="bias")


@pytest.fixture
def model_dir(tiny, tmp_path):
    model, _ = tiny
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


@pytest.fixture
def hashes(monkeypatch):
    """Count full model hashes (each reads every weight byte)."""
    calls = []
    original = cache.model_hash
    monkeypatch.setattr(cache, "model_hash", lambda model: calls.append(1) or original(model))
    return calls


def build_from(directory, tokens, root):
    from transformers import AutoModelForCausalLM

    from supernet.adapters import adapter_for

    model = AutoModelForCausalLM.from_pretrained(directory).eval().requires_grad_(False)
    adapter = adapter_for(model.config)
    grid = supernet_grid(adapter, 0.5, CFG)
    return build_supernet(model, adapter, tokens, CFG, grid, cache_dir=root, weights_dir=directory, progress=False)


def test_a_second_run_finds_its_entry_without_hashing_the_weights(model_dir, calib_tokens, tmp_path, hashes):
    first = build_from(model_dir, calib_tokens, tmp_path / "cache")
    second = build_from(model_dir, calib_tokens, tmp_path / "cache")
    assert (first.from_cache, second.from_cache) == (False, True)
    assert len(hashes) == 1  # the first run hashed the weights, the second read the files' headers only


def test_rewriting_a_weight_changes_the_key(model_dir, calib_tokens, tmp_path, hashes):
    first = build_from(model_dir, calib_tokens, tmp_path / "cache")
    (file,) = model_dir.glob("*.safetensors")
    tensors = load_file(file)
    name = next(k for k in tensors if k.endswith("down_proj.weight"))
    tensors[name][0, 0] += 1.0  # same names, shapes and size: only the bytes differ
    save_file(tensors, file, metadata={"format": "pt"})
    second = build_from(model_dir, calib_tokens, tmp_path / "cache")
    assert not second.from_cache and len(hashes) == 2
    assert second.cache_dir != first.cache_dir


def test_the_identity_reads_the_load_dtype_and_the_file(model_dir):
    import torch

    (file,) = model_dir.glob("*.safetensors")
    fp32 = cache.weight_files_identity(model_dir, torch.float32)
    assert fp32 != cache.weight_files_identity(model_dir, torch.bfloat16)
    file.touch()  # a new modification time: the file may have changed
    assert fp32 != cache.weight_files_identity(model_dir, torch.float32)


def test_the_app_keys_by_the_directory_it_loaded(tiny_reference_dir, calib_tokens, tmp_path, hashes):
    model, _, adapter = load_model(tiny_reference_dir)
    grid = supernet_grid(adapter, 0.5, CFG)
    tokens = calib_tokens % adapter.geometry.vocab
    for _ in range(2):
        build_supernet(model, adapter, tokens, CFG, grid, cache_dir=tmp_path, weights_dir=tiny_reference_dir,
                       progress=False)  # fmt: skip
    assert len(hashes) == 1
    assert len(list((tmp_path / cache.IDENTITIES).glob("*.json"))) == 1
