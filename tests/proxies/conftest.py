"""A tiny in-process Llama, its Switcher, token batches and a few candidate variants."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from proxies import as_batches
from supernet.io.adapters import adapter_for
from supernet.variants.switch import Switcher, Variant

VOCAB = 128


def tiny_model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=VOCAB,
    )
    return LlamaForCausalLM(config).eval().requires_grad_(False)


def make_switcher(seed: int = 0) -> Switcher:
    model = tiny_model(seed)
    return Switcher(model, adapter_for(model.config))


def candidates() -> list[dict[tuple[int, str], Variant | None]]:
    """A few candidates: narrower modules, a removed attention, a removed MLP."""
    empty = torch.tensor([], dtype=torch.long)
    return [
        {(0, "attn"): Variant(torch.tensor([1])), (1, "mlp"): Variant(torch.arange(0, 64, 2))},
        {(1, "attn"): Variant(empty), (0, "mlp"): Variant(torch.arange(16))},
        {(0, "mlp"): Variant(empty), (1, "attn"): Variant(torch.tensor([0]))},
    ]


def dense(switcher: Switcher) -> None:
    switcher.apply(dict.fromkeys(switcher.current))


@pytest.fixture
def switcher() -> Switcher:
    return make_switcher()


@pytest.fixture
def batches() -> list[torch.Tensor]:
    tokens = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(1))
    return as_batches(tokens, 2)
