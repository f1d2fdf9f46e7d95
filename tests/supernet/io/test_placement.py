"""supernet/io/placement.py: the balanced map accelerate computes for given memory, refusals, and the hooks."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from supernet.errors import UsageError
from supernet.io.placement import PlacementConfig, device_slots, memory_caps, place, visible_devices


def make_tiny(*, layers: int) -> tuple[LlamaForCausalLM, None]:
    """fp32, embeddings 97 x 32 = 12,416 B, each layer 37,120 B (hidden 32, MLP 64, 4 heads, 2 KV heads), head
    12,416 B, norm 128 B."""
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)  # fmt: skip
    return LlamaForCausalLM(config).eval().requires_grad_(False), None


def test_balanced_map_puts_half_the_layers_on_each_device() -> None:
    model, _ = make_tiny(layers=4)
    slots = device_slots(model, [10**6, 10**6])
    assert slots == {
        "model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 0,
        "model.layers.2": 1, "model.layers.3": 1, "model.norm": 1, "model.rotary_emb": 1, "lm_head": 1,
    }  # fmt: skip


def test_layers_are_never_split_and_the_caps_bound_each_device() -> None:
    """Three devices of 90,000 B: each holds at most that, and a layer is one entry, never its parts."""
    from accelerate.utils import compute_module_sizes

    model, _ = make_tiny(layers=3)
    slots = device_slots(model, [90_000] * 3)
    sizes = compute_module_sizes(model)
    for slot in range(3):
        assert sum(sizes[name] for name, s in slots.items() if s == slot) <= 90_000
    assert {f"model.layers.{i}" for i in range(3)} <= set(slots)
    assert not [name for name in slots if name.startswith("model.layers.") and name.count(".") > 2]


def test_a_model_that_does_not_fit_is_refused() -> None:
    model, _ = make_tiny(layers=2)
    with pytest.raises(UsageError, match="do not fit on 2 device.*raise placement.max_memory"):
        device_slots(model, [20_000, 20_000])


def test_memory_caps_and_config_checks() -> None:
    assert memory_caps(["cpu", "cpu"], "1MiB") == [2**20, 2**20]
    assert memory_caps(["cpu"], "1000") == [1000]  # bytes
    assert all(0 < cap for cap in memory_caps(["cpu"]))  # half the host's available memory
    assert visible_devices("cpu") == ["cpu"]
    with pytest.raises(UsageError, match="placement.max_memory='lots' is not a size"):
        PlacementConfig(max_memory="lots")
    with pytest.raises(UsageError, match="placement.max_memory='0' must be positive"):
        PlacementConfig(max_memory="0")
    with pytest.raises(UsageError, match="placement.device_map='balanced' is not one of none, auto"):
        PlacementConfig(device_map="balanced")


def test_placed_model_has_hooks_per_layer_and_the_same_logits(calib_tokens: torch.Tensor) -> None:
    """Two groups, both "cpu": accelerate's hooks run (force_hooks), the output is bit-identical."""
    model, _ = make_tiny(layers=2)
    expected = model(input_ids=calib_tokens).logits
    device_map = place(model, ["cpu", "cpu"], max_memory="1MiB")
    assert set(device_map.values()) == {"cpu"} and "model.layers.1" in device_map
    assert all(hasattr(layer, "_hf_hook") for layer in model.model.layers)
    assert torch.equal(model(input_ids=calib_tokens).logits, expected)


def test_load_placed_spreads_the_checkpoint_and_keeps_its_perplexity(tiny_reference_dir, calib_tokens) -> None:
    from supernet.io.loading import load_model
    from supernet.io.perplexity import perplexity
    from supernet.io.placement import load_placed

    model, _, _ = load_model(tiny_reference_dir)
    placed, _, _ = load_placed(tiny_reference_dir, ["cpu", "cpu"], max_memory="1GiB")
    assert hasattr(placed, "hf_device_map") and not hasattr(model, "hf_device_map")
    tokens = calib_tokens % model.config.vocab_size
    assert perplexity(placed, tokens, progress=False) == perplexity(model, tokens, progress=False)
