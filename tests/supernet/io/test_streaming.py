"""The layer stream: a skeleton without weights, modules read from the files on demand, bad files refused."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from supernet.errors import UsageError
from supernet.io.streaming import LayerStream, weights_bytes
from tests.supernet.conftest import make_tiny


@pytest.fixture
def model_dir(tmp_path):
    model, _ = make_tiny(1, layers=2)
    model.save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def rewrite(path, change) -> None:
    file = path / "model.safetensors"
    tensors = load_file(file)
    change(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def test_a_module_is_read_in_the_load_dtype_then_freed(model_dir):
    stream = LayerStream(model_dir, dtype="bfloat16")
    assert {p.device.type for p in stream.model.parameters()} == {"meta"}
    layer = stream.adapter.decoder_layers(stream.model)[1]
    stored = load_file(model_dir / "model.safetensors")["model.layers.1.mlp.down_proj.weight"]
    with stream.resident(layer):
        assert torch.equal(layer.mlp.down_proj.weight, stored.to(torch.bfloat16))
        assert all(p.device.type == "cpu" for p in layer.parameters())
    assert {p.device.type for p in stream.model.parameters()} == {"meta"}
    assert weights_bytes(model_dir, torch.bfloat16) == stream.model_bytes()


def test_missing_and_unexpected_tensors_are_refused(model_dir):
    rewrite(model_dir, lambda t: t.pop("model.layers.1.self_attn.k_proj.weight"))
    with pytest.raises(UsageError, match="lack 1 tensors .e.g. model.layers.1.self_attn.k_proj.weight"):
        LayerStream(model_dir)
    rewrite(model_dir, lambda t: t.update({"model.layers.1.self_attn.k_proj.weight": torch.zeros(16, 32),
                                           "model.layers.2.mlp.up_proj.weight": torch.zeros(1)}))  # fmt: skip
    with pytest.raises(UsageError, match="num_hidden_layers=2 but the weights hold 3 layers"):
        LayerStream(model_dir)


def test_a_non_finite_weight_is_refused_when_read(model_dir):
    rewrite(model_dir, lambda t: t["model.layers.0.mlp.up_proj.weight"].__setitem__((0, 0), float("nan")))
    stream = LayerStream(model_dir)
    with (
        pytest.raises(UsageError, match=r"non-finite values in model.layers.0.mlp.up_proj.weight \(NaN\)"),
        stream.resident(stream.adapter.decoder_layers(stream.model)[0]),
    ):
        pass
