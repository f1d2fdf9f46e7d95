"""Tiny random mixtures of experts (Qwen3-MoE, Qwen2-MoE, Mixtral; 8 experts, top-2) with routing that
is real, for the MoE tests (tests/supernet/adapters/test_moe.py, tests/supernet/test_expert_criteria.py)."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, MixtralConfig, Qwen2MoeConfig, Qwen3MoeConfig

FAMILIES = {"qwen3_moe": Qwen3MoeConfig, "qwen2_moe": Qwen2MoeConfig, "mixtral": MixtralConfig}
EXPERTS, TOP_K = 8, 2


def tiny_moe(family: str):
    torch.manual_seed(0)
    # as the released checkpoints: Qwen3-MoE renormalises the top-k weights (its config class defaults to
    # not), Qwen2-MoE does not and has a shared expert; Qwen2-MoE names the expert count num_experts
    sizes = {
        "qwen3_moe": {"moe_intermediate_size": 24, "norm_topk_prob": True, "num_local_experts": EXPERTS},
        "qwen2_moe": {"moe_intermediate_size": 24, "shared_expert_intermediate_size": 40, "num_experts": EXPERTS},
        "mixtral": {"num_local_experts": EXPERTS},
    }[family]
    config = FAMILIES[family](hidden_size=32, intermediate_size=24, num_hidden_layers=3, num_attention_heads=4,
                              num_key_value_heads=2, head_dim=8, vocab_size=97, num_experts_per_tok=TOP_K,
                              pad_token_id=0, bos_token_id=1, eos_token_id=2, **sizes)  # fmt: skip
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
            elif param.dim() >= 2:  # the router starts at zero in Qwen3-MoE: random rows make routing real
                param.normal_(0.0, 0.3)
    return model
