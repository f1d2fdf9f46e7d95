from __future__ import annotations

from conftest import candidates

from proxies.params import FlopsProxy, ParamsProxy, forward_flops


def test_params_counts_the_live_model(switcher, batches):
    model = switcher.model
    dense = ParamsProxy(switcher).score(model, batches)
    assert dense == -sum(p.numel() for p in model.parameters())
    switcher.apply(candidates()[0])
    assert ParamsProxy(switcher).score(model, batches) > dense


def test_flops_by_hand(switcher, batches):
    # per layer: q 32x32, k 16x32, v 16x32, o 32x32, gate/up 64x32, down 32x64; head 128x32
    # per token over causal windows of T = 16: 2 (weights) + 4 d heads (T + 1) / 2 per layer
    linear = 2 * (3072 + 3 * 2048) + 128 * 32
    attention = 2 * 4 * 8 * 4 * 17 / 2  # layers * 4 * head_dim * heads * (T + 1) / 2
    assert forward_flops(switcher.model, switcher, 16) == 2 * linear + attention
    assert FlopsProxy(switcher).score(switcher.model, batches) == -(2 * linear + attention)
    switcher.apply(candidates()[1])  # layer 1 attention removed, layer 0 MLP at 16 channels
    linear = 3072 + 3 * 16 * 32 + 3 * 2048 + 128 * 32
    assert forward_flops(switcher.model, switcher, 16) == 2 * linear + 4 * 8 * 4 * 17 / 2
