"""The materialised model is physically small and plain: compact contiguous tensors, no hooks, same logits."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from supernet.io.adapters import adapter_for
from supernet.io.export import materialize
from supernet.variants.switch import Switcher, Variant


def test_materialised_tensors_are_compact_contiguous_and_unhooked():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8)  # fmt: skip
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    switcher = Switcher(model, adapter_for(config))
    switcher.apply({
        (0, "attn"): Variant(torch.tensor([1]), out_bias=torch.randn(32)),
        (0, "mlp"): Variant(torch.arange(0, 64, 4), out_weight=torch.randn(32, 16)),
        (1, "attn"): Variant(torch.tensor([], dtype=torch.long), out_bias=torch.randn(32)),
        (1, "mlp"): Variant(torch.arange(40)),
    })  # fmt: skip
    pruned = materialize(model, switcher.shapes())
    for name, p in pruned.named_parameters():
        assert p.is_contiguous(), name
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size(), f"{name} is a view of a larger tensor"
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in pruned.modules())
    dense_params = sum(p.numel() for p in LlamaForCausalLM(config).parameters())
    assert sum(p.numel() for p in pruned.parameters()) < dense_params
    tokens = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(pruned(input_ids=tokens).logits, model(input_ids=tokens).logits,
                                   rtol=1e-5, atol=1e-6)  # fmt: skip


def test_the_shipped_modeling_file_reads_head_dim_as_the_adapters_do() -> None:
    """modeling_strata.py ships alone with every model and keeps its own copy of the head_dim rule."""
    from transformers import LlamaConfig, Qwen3Config

    from supernet.io.adapters.base import config_head_dim
    from supernet.io.export import modeling_strata

    configs = [
        LlamaConfig(hidden_size=64, num_attention_heads=4),  # hidden / heads
        LlamaConfig(hidden_size=64, num_attention_heads=4, head_dim=128),  # declared, wider than hidden / heads
        Qwen3Config(hidden_size=64, num_attention_heads=4, head_dim=32),
    ]
    assert [config_head_dim(c) for c in configs] == [16, 128, 32]
    assert [modeling_strata.config_head_dim(c) for c in configs] == [16, 128, 32]
