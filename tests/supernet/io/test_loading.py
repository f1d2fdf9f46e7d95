"""Memory-mapped loading: the weights stay the file's bytes, and the streamed build on them equals an
in-memory build bit for bit."""

from __future__ import annotations

import copy
import sys

import pytest
import torch

from supernet.io.loading import load_model, mapped_bytes
from supernet.space.grids import supernet_grid
from supernet.variants.build import build_supernet
from supernet.variants.config import SupernetConfig

SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32"}

LINUX_ONLY = "psutil lists a process's file mappings (memory_maps) on Linux"


def stored_dtype(directory) -> str:
    """The dtype of the first tensor in the directory's safetensors file, as a torch dtype name."""
    from safetensors import safe_open

    (file,) = sorted(directory.glob("*.safetensors"))
    with safe_open(str(file), framework="pt") as handle:
        return SAFETENSORS_DTYPES[handle.get_slice(next(iter(handle.keys()))).get_dtype()]


def param_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason=LINUX_ONLY)
def test_weights_are_mapped_when_the_dtype_matches_the_file(tiny_reference_dir):
    model, _, _ = load_model(tiny_reference_dir, dtype=stored_dtype(tiny_reference_dir))
    assert mapped_bytes(model, tiny_reference_dir) >= param_bytes(model)  # every parameter (buffers are not)
    other = "float32" if stored_dtype(tiny_reference_dir) != "float32" else "bfloat16"
    converted, _, _ = load_model(tiny_reference_dir, dtype=other)
    assert mapped_bytes(converted, tiny_reference_dir) == 0  # a converted copy lives in process memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason=LINUX_ONLY)
def test_build_on_mapped_weights_equals_the_in_memory_build(tiny_reference_dir):
    mapped, _, adapter = load_model(tiny_reference_dir, dtype=stored_dtype(tiny_reference_dir))
    in_memory = copy.deepcopy(mapped)
    assert mapped_bytes(in_memory, tiny_reference_dir) == 0
    cfg = SupernetConfig(criterion="flap", compensation="refit", store_dtype="float32")  # H and refit columns too
    grid = supernet_grid(adapter, 0.5, cfg)
    tokens = torch.randint(0, adapter.geometry.vocab, (4, 32), generator=torch.Generator().manual_seed(0))
    nets = [build_supernet(m, adapter, tokens, cfg, grid, use_cache=False, progress=False) for m in (mapped, in_memory)]
    for field in ("rankings", "fluctuation", "biases", "weights"):
        first, second = getattr(nets[0], field), getattr(nets[1], field)
        assert first.keys() == second.keys() and first, field
        for key in first:
            assert torch.equal(first[key], second[key]), (field, key)
