"""The layouts of real checkpoints (their config.json fields that shape pruning), for tests.

A GQA group's parameters are rarely a whole number of MLP channels on these: 426.7 channels for
Llama-3.1-8B, 341.5 for Qwen2.5-0.5B. ``layers`` and ``vocab`` shrink a layout for an end-to-end run;
the ratio of a group's cost to a channel's ((2g + 2) d / 3) does not depend on them.

``LAYOUTS`` are the Llama-like families (pruned end to end in tests/search/app/test_real_layouts_run.py);
``FAMILY_LAYOUTS`` the families with their own quirks (pruned end to end in
tests/search/app/test_families_run.py); ``REAL_LAYOUTS`` both. Values from each checkpoint's config.json on
the Hugging Face Hub (google/gemma-2-2b, google/gemma-3-1b-pt, microsoft/Phi-3-mini-4k-instruct,
allenai/OLMo-2-1124-7B, ibm-granite/granite-3.1-2b-base, Qwen/Qwen3-30B-A3B, mistralai/Mixtral-8x7B-v0.1,
Qwen/Qwen1.5-MoE-A2.7B). ``MOE_LAYOUTS`` are the mixtures of experts (tests/supernet/test_moe_layouts.py,
tests/search/app/test_moe_run.py).
"""

from __future__ import annotations

from transformers import (
    Gemma2Config,
    Gemma3TextConfig,
    GraniteConfig,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    Olmo2Config,
    Phi3Config,
    Qwen2Config,
    Qwen2MoeConfig,
    Qwen3Config,
    Qwen3MoeConfig,
)

LAYOUTS = {
    # name: (config class, hidden, intermediate, heads, KV heads, head_dim, layers, vocab, tied)
    "llama-3.1-8b": (LlamaConfig, 4096, 14336, 32, 8, 128, 32, 128256, False),
    "llama-3.2-1b": (LlamaConfig, 2048, 8192, 32, 8, 64, 16, 128256, True),
    "mistral-7b": (MistralConfig, 4096, 14336, 32, 8, 128, 32, 32768, False),
    "qwen2.5-0.5b": (Qwen2Config, 896, 4864, 14, 2, 64, 24, 151936, True),
    "qwen2.5-7b": (Qwen2Config, 3584, 18944, 28, 4, 128, 28, 152064, False),
    "qwen3-0.6b": (Qwen3Config, 1024, 3072, 16, 8, 128, 28, 151936, True),
    "qwen3-8b": (Qwen3Config, 4096, 12288, 32, 8, 128, 36, 151936, False),
    "llama-2-7b-mha": (LlamaConfig, 4096, 11008, 32, 32, 128, 32, 32000, False),
}
FAMILY_LAYOUTS = {
    "gemma-2-2b": (Gemma2Config, 2304, 9216, 8, 4, 256, 26, 256000, True),
    "gemma-3-1b": (Gemma3TextConfig, 1152, 6912, 4, 1, 256, 26, 262144, True),
    "phi-3-mini": (Phi3Config, 3072, 8192, 32, 32, 96, 32, 32064, False),
    "olmo-2-7b": (Olmo2Config, 4096, 11008, 32, 32, 128, 32, 100352, False),
    "granite-3.1-2b": (GraniteConfig, 2048, 8192, 32, 8, 64, 40, 49155, True),
}
# mixtures of experts: the intermediate column is one expert's width (Qwen3-30B-A3B: moe_intermediate_size)
MOE_LAYOUTS = {
    "qwen3-30b-a3b": (Qwen3MoeConfig, 2048, 768, 32, 4, 128, 48, 151936, False),
    "mixtral-8x7b": (MixtralConfig, 4096, 14336, 32, 8, 128, 32, 32000, False),
    "qwen1.5-moe-a2.7b": (Qwen2MoeConfig, 2048, 1408, 16, 16, 128, 24, 151936, False),
}
REAL_LAYOUTS = LAYOUTS | FAMILY_LAYOUTS
# the rest of what sets a family apart, as in its checkpoint's config.json
QUIRKS = {
    "gemma-2-2b": dict(query_pre_attn_scalar=256, attn_logit_softcapping=50.0, final_logit_softcapping=30.0,
                       sliding_window=4096),
    "gemma-3-1b": dict(query_pre_attn_scalar=256, sliding_window=512),
    "phi-3-mini": dict(sliding_window=2047),
    "qwen3-30b-a3b": dict(moe_intermediate_size=768, num_local_experts=128, num_experts_per_tok=8,
                          norm_topk_prob=True),
    "mixtral-8x7b": dict(num_local_experts=8, num_experts_per_tok=2, sliding_window=None),
    "qwen1.5-moe-a2.7b": dict(moe_intermediate_size=1408, num_experts=60, num_experts_per_tok=4,
                              shared_expert_intermediate_size=5632, norm_topk_prob=False),
    "granite-3.1-2b": dict(embedding_multiplier=12.0, residual_multiplier=0.22, attention_multiplier=0.015625,
                           logits_scaling=8.0),
}  # fmt: skip


def layout_config(name: str, *, layers: int | None = None, vocab: int | None = None, hidden: int | None = None,
                  **overrides):  # fmt: skip
    """The transformers config of a real layout (optionally fewer layers, a smaller vocabulary or residual;
    ``overrides``: other config fields, e.g. a mixture's expert count)."""
    cls, d_model, inter, heads, kv, head_dim, n_layers, n_vocab, tied = (REAL_LAYOUTS | MOE_LAYOUTS)[name]
    config = cls(
        hidden_size=hidden or d_model,
        intermediate_size=inter,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        head_dim=head_dim,
        num_hidden_layers=layers or n_layers,
        vocab_size=vocab or n_vocab,
        tie_word_embeddings=tied,
        max_position_embeddings=512,
        **(QUIRKS.get(name, {}) | overrides),
    )
    for token in ("pad_token_id", "bos_token_id", "eos_token_id"):  # a shrunk vocabulary: ids inside it
        if isinstance(getattr(config, token, None), int) and getattr(config, token) >= config.vocab_size:
            setattr(config, token, 0)
    return config
