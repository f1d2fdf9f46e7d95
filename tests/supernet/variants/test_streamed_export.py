"""The streamed export writes model/ and model.gguf byte for byte as the export of the live pruned model does."""

from __future__ import annotations

import filecmp
import functools

import pytest
import torch

from supernet.io.export import materialize, save_pruned
from supernet.io.export.gguf import export_gguf
from supernet.io.loading import load_model
from supernet.io.streaming import LayerStream
from supernet.space.grids import supernet_grid
from supernet.variants.build import build_supernet
from supernet.variants.config import SupernetConfig
from supernet.variants.streamed_export import save_pruned_streamed
from supernet.variants.switch import Switcher

# attention of layer 0 removed, the MLP of layer 0 at a fine level (its compensation fitted at the coarse level
# above, the dropped columns' mean moved into the bias), attention of layer 1 at one group, its MLP removed
LEVELS = [0, 5, 1, 0]


@functools.cache
def pruned(path, dtype: str):
    """The live model pruned to LEVELS, its switcher and tokenizer, and the supernet's variants (built once per
    model and dtype: the tests only read them)."""
    model, tokenizer, adapter = load_model(path, dtype=dtype)
    tokens = torch.randint(0, adapter.geometry.vocab, (4, 32), generator=torch.Generator().manual_seed(0))
    cfg = SupernetConfig()
    grid = supernet_grid(adapter, 0.5, cfg)
    net = build_supernet(model, adapter, tokens, cfg, grid, use_cache=False, progress=False)
    switcher = Switcher(model, adapter)
    net.apply(switcher, LEVELS)
    return model, switcher, tokenizer, net.variants(LEVELS)


def same_files(a, b) -> None:
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        assert filecmp.cmp(a / name, b / name, shallow=False), f"{name} differs"


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_model_dir_and_gguf_are_byte_identical(tiny_reference_dir, tmp_path, dtype):
    model, switcher, tokenizer, variants = pruned(tiny_reference_dir, dtype)
    live, streamed = tmp_path / "live" / "model", tmp_path / "streamed" / "model"  # the GGUF names the directory
    save_pruned(model, switcher.shapes(), tokenizer, live)
    save_pruned_streamed(LayerStream(tiny_reference_dir, dtype=dtype), variants, tokenizer, streamed)
    same_files(live, streamed)
    if dtype == "float32":
        for directory in (live, streamed):
            export_gguf(directory, directory.parent / "model.gguf", dtype="f16")
        assert filecmp.cmp(live.parent / "model.gguf", streamed.parent / "model.gguf", shallow=False)


def test_shards_and_index_are_those_of_save_pretrained(tiny_reference_dir, tmp_path):
    model, switcher, tokenizer, variants = pruned(tiny_reference_dir, "float32")
    materialize(model, switcher.shapes()).save_pretrained(tmp_path / "live", max_shard_size=60_000)
    save_pruned_streamed(LayerStream(tiny_reference_dir), variants, tokenizer, tmp_path / "streamed",
                         max_shard_size=60_000)  # fmt: skip
    shards = sorted(p.name for p in (tmp_path / "live").glob("model*.safetensors*"))
    assert len(shards) > 2 and "model.safetensors.index.json" in shards
    for name in shards:
        assert filecmp.cmp(tmp_path / "live" / name, tmp_path / "streamed" / name, shallow=False), name
