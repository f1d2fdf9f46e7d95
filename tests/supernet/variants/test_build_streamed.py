"""The layer-streamed build (supernet.stream): the same bits and the same cache entry as the build on the loaded
model, weights never all in memory, and the auto rule."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM

from supernet.errors import UsageError
from supernet.io.identity import model_hash, weight_files
from supernet.io.streaming import LayerStream, check_stream, should_stream
from supernet.space.grids import supernet_grid
from supernet.variants.build import build_supernet
from supernet.variants.config import SupernetConfig
from tests.supernet.conftest import make_tiny


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny 3-layer Llama saved in bfloat16 (loaded in float32: the cast the streamed read must repeat)."""
    model, _ = make_tiny(3, layers=3)
    path = tmp_path_factory.mktemp("streamed") / "model"
    model.to(torch.bfloat16).save_pretrained(path)
    return path


def tensors(net) -> dict[str, torch.Tensor]:
    return {f"{stem}/{name}": t for stem, group in net.to_tensors().items() for name, t in group.items()}


def loaded(path, dtype: str):
    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype)).eval().requires_grad_(False)


@pytest.mark.parametrize(("dtype", "propagate"), [("float32", "expected"), ("bfloat16", "dense")])
def test_streamed_build_equals_the_loaded_build_bit_for_bit(model_dir, calib_tokens, tmp_path, dtype, propagate):
    weights = weight_files(model_dir, getattr(torch, dtype))
    model = loaded(model_dir, dtype)
    stream = LayerStream(model_dir, dtype=dtype)
    cfg = SupernetConfig(propagate=propagate, stream=True)
    grid = supernet_grid(stream.adapter, 0.5, cfg)
    seen = []  # parameters on a real device while each layer is filled: that layer's only
    calibrate = stream.resident

    def resident(module):
        seen.append(sum(p.device.type != "meta" for p in stream.model.parameters()))
        return calibrate(module)

    stream.resident = resident
    streamed = build_supernet(stream.model, stream.adapter, calib_tokens, cfg, grid, cache_dir=tmp_path,
                              weights=weights, progress=False, stream=stream)  # fmt: skip
    assert max(seen) == 0, f"weights left on the device between modules: {seen}"
    assert not streamed.from_cache
    plain_cfg = SupernetConfig(propagate=propagate, stream=False)
    plain = build_supernet(model, stream.adapter, calib_tokens, plain_cfg, grid, cache_dir=tmp_path, weights=weights,
                           progress=False)  # fmt: skip
    assert plain.from_cache, "the streamed build's cache entry is not the one the plain build looks for"
    fresh = build_supernet(model, stream.adapter, calib_tokens, plain_cfg, grid, use_cache=False, progress=False)
    a, b = tensors(streamed), tensors(fresh)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    assert stream.model_hash() == model_hash(model)
    assert stream.model_bytes() == sum(p.numel() * p.element_size() for p in model.parameters())


def test_stream_true_on_a_loaded_model_reads_the_files(model_dir, calib_tokens, monkeypatch):
    weights = weight_files(model_dir, torch.float32)
    model = loaded(model_dir, "float32")
    read = []
    monkeypatch.setattr(LayerStream, "load", lambda self, module, f=LayerStream.load: (read.append(1), f(self, module)))
    cfg = SupernetConfig(stream=True, criterion="magnitude", compensation="none")  # what is read, not the math
    adapter = make_tiny(layers=3)[1]
    grid = supernet_grid(adapter, 0.5, cfg)
    build_supernet(model, adapter, calib_tokens, cfg, grid, use_cache=False, weights=weights, progress=False)
    assert len(read) == 1 + 3  # the embeddings, then each layer
    with pytest.raises(UsageError, match="supernet.stream=true reads the model's layers from its files"):
        build_supernet(model, adapter, calib_tokens, cfg, grid, use_cache=False, progress=False)


def test_the_auto_rule_compares_the_model_with_the_free_memory(monkeypatch):
    import psutil

    class Memory:
        available = 10 * 2**30

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory)
    assert should_stream("auto", 7 * 2**30, "cpu") and not should_stream("auto", 5 * 2**30, "cpu")
    assert should_stream(True, 1, "cpu") and not should_stream("false", 2**40, "cpu")
    assert check_stream("TRUE") is True and check_stream("auto") == "auto"
    with pytest.raises(UsageError, match="supernet.stream='sometimes' is not one of auto, true, false"):
        SupernetConfig(stream="sometimes")
