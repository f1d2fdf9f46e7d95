"""The cache key of a model loaded from a directory: its weight files' identity (taken before the load)
stands for the weights, so a second run reads no weight byte to find its entry; rewriting a weight, before
or after the load, changes the key; so does the model's config."""

from __future__ import annotations

import pytest
import torch
from cache_entries import entries
from safetensors.torch import load_file, save_file

from supernet.io import identity
from supernet.space.grids import supernet_grid
from supernet.variants.build import build_supernet
from supernet.variants.config import SupernetConfig

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
    original = identity.model_hash
    monkeypatch.setattr(identity, "model_hash", lambda model: calls.append(1) or original(model))
    return calls


def load(directory):
    from transformers import AutoModelForCausalLM

    from supernet.io.adapters import adapter_for

    weights = identity.weight_files(directory, torch.float32)
    model = AutoModelForCausalLM.from_pretrained(directory).eval().requires_grad_(False)
    return model, adapter_for(model.config), weights


def build(model, adapter, weights, tokens, root):
    grid = supernet_grid(adapter, 0.5, CFG)
    return build_supernet(model, adapter, tokens, CFG, grid, cache_dir=root, weights=weights, progress=False)


def build_from(directory, tokens, root):
    return build(*load(directory), tokens, root)


def rewrite_one_weight(directory) -> None:
    """Same names, shapes and size: only one value's bytes differ."""
    (file,) = directory.glob("*.safetensors")
    tensors = load_file(file)
    name = next(k for k in tensors if k.endswith("down_proj.weight"))
    tensors[name][0, 0] += 1.0
    save_file(tensors, file, metadata={"format": "pt"})


def test_a_second_run_finds_its_entry_without_hashing_the_weights(model_dir, calib_tokens, tmp_path, hashes):
    first = build_from(model_dir, calib_tokens, tmp_path / "cache")
    second = build_from(model_dir, calib_tokens, tmp_path / "cache")
    assert (first.from_cache, second.from_cache) == (False, True)
    assert len(hashes) == 1  # the first run hashed the weights, the second read the files' headers only


def test_rewriting_a_weight_changes_the_key(model_dir, calib_tokens, tmp_path, hashes):
    build_from(model_dir, calib_tokens, tmp_path / "cache")
    rewrite_one_weight(model_dir)
    second = build_from(model_dir, calib_tokens, tmp_path / "cache")
    assert not second.from_cache and len(hashes) == 2
    assert len(entries(tmp_path / "cache")) == 2


def test_files_rewritten_after_the_load_are_not_taken_for_the_loaded_weights(
    model_dir, calib_tokens, tmp_path, hashes
) -> None:
    loaded = load(model_dir)  # the old weights in memory
    rewrite_one_weight(model_dir)  # a training job saves into the folder meanwhile
    build(*loaded, calib_tokens, tmp_path / "cache")
    assert len(hashes) == 1 and not list((tmp_path / "cache" / identity.IDENTITIES).glob("*.json"))  # no record
    new = build_from(model_dir, calib_tokens, tmp_path / "cache")
    assert not new.from_cache and len(entries(tmp_path / "cache")) == 2


def test_the_model_config_is_part_of_the_key(model_dir, calib_tokens, tmp_path) -> None:
    model, adapter, weights = load(model_dir)
    build(model, adapter, weights, calib_tokens, tmp_path)
    model.config.rope_parameters = {**model.config.rope_parameters, "rope_theta": 1234.0}  # no tensor changes
    second = build(model, adapter, weights, calib_tokens, tmp_path)
    assert not second.from_cache and len(entries(tmp_path)) == 2


def test_the_identity_reads_the_load_dtype_and_the_file(model_dir):
    (file,) = model_dir.glob("*.safetensors")
    fp32 = identity.weight_files_identity(model_dir, torch.float32)
    assert fp32 != identity.weight_files_identity(model_dir, torch.bfloat16)
    file.touch()  # a new modification time: the file may have changed
    assert fp32 != identity.weight_files_identity(model_dir, torch.float32)


def test_the_app_keys_by_the_directory_it_loaded(tiny_reference_dir, calib_tokens, tmp_path, hashes):
    from search.app.inputs import load_inputs
    from supernet.io.data import DataConfig
    from supernet.io.loading import ModelConfig

    inputs = load_inputs(ModelConfig(path=str(tiny_reference_dir)), DataConfig(source="builtin"), device="cpu",
                         attn_unit="group", seed=0, progress=False)  # fmt: skip
    assert inputs.weights is not None and inputs.weights.directory == tiny_reference_dir
    grid = supernet_grid(inputs.adapter, 0.5, CFG)
    tokens = calib_tokens % inputs.adapter.geometry.vocab
    for _ in range(2):
        build_supernet(inputs.model, inputs.adapter, tokens, CFG, grid, cache_dir=tmp_path, weights=inputs.weights,
                       progress=False)  # fmt: skip
    assert len(hashes) == 1
    assert len(list((tmp_path / identity.IDENTITIES).glob("*.json"))) == 1
