"""Adapter registry and per-family facts."""

from __future__ import annotations

import pytest
import torch
from transformers import GPT2Config, LlamaConfig, Qwen2Config

from supernet.errors import UsageError
from supernet.io.adapters import ADAPTERS, adapter_for


def test_unknown_architecture_names_the_supported_ones() -> None:
    with pytest.raises(
        UsageError,
        match="unsupported architecture 'gpt2'.*gemma2, gemma3_text, granite, llama, mistral, mixtral, olmo2, phi3",
    ):
        adapter_for(GPT2Config())


def test_every_family_is_registered() -> None:
    assert sorted(ADAPTERS) == [
        "gemma2",
        "gemma3_text",
        "granite",
        "llama",
        "mistral",
        "mixtral",
        "olmo2",
        "phi3",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
    ]


def test_gqa_group_cost_is_2g_plus_2_heads() -> None:
    # 8 query heads in 2 groups: g = 4, head_dim 64 / 8 = 8, hidden 64 -> (2*4 + 2) * 8 * 64
    config = LlamaConfig(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, intermediate_size=96)
    adapter = adapter_for(config)
    assert adapter.unit_params("attn") == (2 * 4 + 2) * 8 * 64
    assert adapter.unit_params("mlp") == 3 * 64


def test_qwen2_group_cost_counts_qkv_biases() -> None:
    config = Qwen2Config(hidden_size=64, num_attention_heads=8, num_key_value_heads=2, intermediate_size=96)
    assert adapter_for(config).unit_params("attn") == (2 * 4 + 2) * 8 * 64 + (4 + 2) * 8


def test_block_index_covers_a_group_query_heads_and_its_kv_head() -> None:
    config = LlamaConfig(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8)
    adapter = adapter_for(config)
    group1 = torch.tensor([1])
    assert adapter.block_index(group1, "query", kind="attn").tolist() == list(range(16, 32))
    assert adapter.block_index(group1, "kv", kind="attn").tolist() == list(range(8, 16))
