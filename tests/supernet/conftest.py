"""Tiny in-process Llama models and calibration tokens for the supernet tests."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from supernet.io.adapters import adapter_for


def make_tiny(seed: int = 0, *, layers: int = 2, intermediate: int = 64):
    """hidden 32, 4 heads, 2 KV heads (2 GQA groups of 2 heads), head_dim 8, fp32, eval mode."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        max_position_embeddings=64,
    )
    model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    return model, adapter_for(config)


@pytest.fixture
def tiny():
    return make_tiny()


@pytest.fixture
def calib_tokens() -> torch.Tensor:
    return torch.randint(0, 97, (6, 16), generator=torch.Generator().manual_seed(0))
