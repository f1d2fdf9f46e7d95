"""Facts of single families: Phi-3's fused rows, OLMo 2's whole-projection q/k norms."""

from __future__ import annotations

import torch
from transformers import Olmo2Config, Olmo2ForCausalLM, Phi3Config

from supernet.io.adapters import adapter_for
from supernet.io.adapters.olmo2 import kept_norm_shift
from supernet.variants.switch import Switcher, Variant


def test_phi3_group_owns_a_block_of_rows_in_each_of_query_key_and_value():
    # 4 heads in 2 groups, head_dim 8: query rows 0-31, key rows 32-47, value rows 48-63
    config = Phi3Config(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=10)
    adapter = adapter_for(config)
    qkv, _ = adapter.attention_plan
    rows = adapter.block_index(torch.tensor([1]), qkv.block, kind="attn").tolist()
    assert rows == list(range(16, 32)) + list(range(40, 48)) + list(range(56, 64))
    gate_up, _ = adapter.mlp_plan
    assert adapter.block_index(torch.tensor([2, 7]), gate_up.block, kind="mlp").tolist() == [2, 7, 12, 17]
    assert adapter.unit_params("attn") == (2 * 2 + 2) * 8 * 32 and adapter.unit_params("mlp") == 3 * 32


def test_phi3_unit_sums_add_every_block_of_a_fused_projection():
    config = Phi3Config(hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8, intermediate_size=10)
    adapter = adapter_for(config)
    gate_up, _ = adapter.mlp_plan
    per_row = torch.arange(20, dtype=torch.float64)  # gate rows 0-9, up rows 10-19
    assert adapter.unit_sums(gate_up, per_row, "mlp").tolist() == [c + 10 + c for c in range(10)]


def test_olmo2_norm_over_kept_heads_is_the_dense_one_times_the_rms_ratio():
    """The pruned q_norm divides by the RMS of the kept heads: normalised kept queries = dense ones *
    rms_all / rms_kept, and kept_norm_shift is that ratio's distance to 1."""
    torch.manual_seed(0)
    config = Olmo2Config(hidden_size=32, intermediate_size=16, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, head_dim=8, vocab_size=50)  # fmt: skip
    model = Olmo2ForCausalLM(config).eval()
    attention = model.model.layers[0].self_attn
    with torch.no_grad():
        attention.q_norm.weight.uniform_(0.5, 1.5)
    hidden = torch.randn(5, 32)  # [tokens, hidden]
    with torch.no_grad():
        raw = attention.q_proj(hidden)  # [5, 32] before the norm
        dense = attention.q_norm(raw)
        switcher = Switcher(model, adapter_for(config))
        switcher.set(0, "attn", Variant(torch.tensor([1])))  # group 1: query rows 16-31
        kept = torch.arange(16, 32)
        pruned = attention.q_norm(attention.q_proj(hidden))  # [5, 16]
    ratio = (raw.pow(2).mean(-1) + config.rms_norm_eps).sqrt() / (
        raw[:, kept].pow(2).mean(-1) + config.rms_norm_eps
    ).sqrt()
    torch.testing.assert_close(pruned, dense[:, kept] * ratio[:, None], rtol=1e-5, atol=1e-6)
    change = (pruned - dense[:, kept]).norm(dim=-1) / dense[:, kept].norm(dim=-1)
    torch.testing.assert_close(kept_norm_shift(raw, kept, config.rms_norm_eps), change.double(), rtol=1e-4, atol=1e-6)
    assert change.min() > 0  # removing heads does change what the kept ones are divided by
