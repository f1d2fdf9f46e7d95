"""The switcher installs each variant on the device of the module it replaces (a layer on "meta" stands for a
second device: any tensor left on the host would show there)."""

from __future__ import annotations

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
