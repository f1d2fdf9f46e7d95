"""Proxies on a model spread by accelerate (supernet/io/placement.py) over two groups, both "cpu", score and
forward exactly as on the single-device model: hooks move hidden states between groups, the switcher installs
each variant on its layer's device, gradients flow back through the hooks."""

from __future__ import annotations

import pytest
import torch
from conftest import candidates, dense, make_switcher, tiny_model

from proxies import make_proxy
from supernet.io.adapters import adapter_for
from supernet.io.placement import device_slots, memory_caps, place
from supernet.variants.switch import Switcher


def placed_switcher() -> Switcher:
    model = tiny_model()
    slots = device_slots(model, memory_caps(["cpu", "cpu"], "1MiB"))
    assert slots["model.layers.0"] != slots["model.layers.1"], slots
    place(model, ["cpu", "cpu"], max_memory="1MiB")  # the same map, dispatched with hooks
    assert all(hasattr(layer, "_hf_hook") for layer in model.model.layers)
    return Switcher(model, adapter_for(model.config))


@pytest.mark.parametrize("name", ["kl", "ppl", "trace_correlation"])
def test_scores_and_logits_equal_the_single_device_model(name: str, batches: list[torch.Tensor]) -> None:
    single, placed = make_switcher(), placed_switcher()
    proxies = [make_proxy(name, s) for s in (single, placed)]
    for proxy, switcher in zip(proxies, (single, placed), strict=True):
        proxy.prepare(switcher.model, batches)
    for variants in candidates():
        scores, logits = [], []
        for proxy, switcher in zip(proxies, (single, placed), strict=True):
            dense(switcher)
            switcher.apply(variants)
            scores.append(proxy.score(switcher.model, batches))
            logits.append(switcher.model(input_ids=batches[0]).logits)
        assert scores[0] == scores[1], (name, scores)
        assert torch.equal(logits[0], logits[1])
