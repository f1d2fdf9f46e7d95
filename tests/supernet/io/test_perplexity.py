"""Perplexity over windows against a brute-force loop that scores one next token at a time."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from supernet.io.perplexity import perplexity


@pytest.fixture(scope="module")
def model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).double().eval()


def _brute_force(model: LlamaForCausalLM, tokens: torch.Tensor) -> float:
    """exp(mean -log p(x_t | x_<t)), each token predicted by its own forward of its prefix."""
    nll, count = 0.0, 0
    with torch.no_grad():
        for window in tokens:
            for t in range(1, window.shape[0]):
                logits = model(input_ids=window[None, :t]).logits[0, -1]  # [vocab]
                nll -= F.log_softmax(logits, dim=-1)[window[t]].item()
                count += 1
    return math.exp(nll / count)


def test_matches_brute_force_whatever_the_batch_size(model: LlamaForCausalLM) -> None:
    tokens = torch.randint(0, 50, (5, 9), generator=torch.Generator().manual_seed(0))
    expected = _brute_force(model, tokens)
    for batch_size in (1, 2, 8):
        got = perplexity(model, tokens, batch_size=batch_size, progress=False)
        assert got == pytest.approx(expected, rel=1e-9), batch_size


def test_windows_are_scored_independently(model: LlamaForCausalLM) -> None:
    tokens = torch.randint(0, 50, (4, 8), generator=torch.Generator().manual_seed(1))
    per_window = [math.log(perplexity(model, window[None], progress=False)) for window in tokens]
    assert math.log(perplexity(model, tokens, progress=False)) == pytest.approx(sum(per_window) / 4, rel=1e-9)


def test_untrained_model_is_near_uniform(model: LlamaForCausalLM) -> None:
    tokens = torch.randint(0, 50, (8, 16), generator=torch.Generator().manual_seed(2))
    assert 40 < perplexity(model, tokens, progress=False) < 60
