"""The switcher installs each variant on the device of the module it replaces (a layer on "meta" stands for a
second device: any tensor left on the host would show there)."""

from __future__ import annotations

import pytest
import torch

from supernet.variants.switch import Switcher, Variant

EMPTY = torch.tensor([], dtype=torch.long)


def devices(module: torch.nn.Module) -> set[str]:
    return {t.device.type for t in [*module.parameters(), *module.buffers()]}


def test_variants_live_on_their_layers_device(tiny) -> None:
    model, adapter = tiny
    model.model.layers[1].to("meta")  # before the switcher takes its references to the dense tensors
    switcher = Switcher(model, adapter)
    refit = torch.randn(32, 32)  # [hidden, kept channels], compensation arrives from the host cache
    switcher.apply({
        (0, "attn"): Variant(torch.tensor([1]), out_bias=torch.randn(32)),
        (1, "attn"): Variant(torch.tensor([0]), out_bias=torch.randn(32)),
        (0, "mlp"): Variant(torch.arange(0, 64, 2), out_bias=torch.randn(32), out_weight=refit),
        (1, "mlp"): Variant(torch.arange(0, 64, 2), out_bias=torch.randn(32), out_weight=refit),
    })  # fmt: skip
    assert devices(switcher.layers[0]) == {"cpu"} and devices(switcher.layers[1]) == {"meta"}
    switcher.apply({(1, "attn"): Variant(EMPTY, out_bias=torch.randn(32)), (1, "mlp"): Variant(EMPTY)})
    assert type(switcher.layers[1].self_attn).__name__ == "RemovedAttention"
    assert devices(switcher.layers[1]) == {"meta"}
    switcher.apply(dict.fromkeys(switcher.current))
    assert devices(switcher.layers[0]) == {"cpu"} and devices(switcher.layers[1]) == {"meta"}


@pytest.mark.parametrize("family", ["qwen3_moe", "qwen2_moe"])
def test_a_mixtures_experts_live_on_their_layers_device(family: str) -> None:
    """Experts kept, their width, Qwen2-MoE's shared expert with its bias, and a removed block: all on "meta"."""
    from moe_models import tiny_moe

    from supernet.io.adapters import adapter_for

    model = tiny_moe(family).requires_grad_(False)
    model.model.layers[1].to("meta")
    switcher = Switcher(model, adapter_for(model.config, expert_unit="both"))
    variants = {(1, "mlp"): Variant(torch.arange(16).repeat(8, 1)), (1, "experts"): Variant(torch.tensor([1, 2, 5]))}
    if (1, "shared") in switcher.current:
        variants[1, "shared"] = Variant(torch.arange(0, 40, 2), out_bias=torch.randn(32))
    switcher.apply(variants)
    assert devices(switcher.layers[1]) == {"meta"} and devices(switcher.layers[0]) == {"cpu"}
    switcher.apply({(1, "experts"): Variant(EMPTY)})
    assert type(switcher.layers[1].mlp).__name__ == "RemovedMLP" and devices(switcher.layers[1]) == {"meta"}
