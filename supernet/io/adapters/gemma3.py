"""Gemma 3 (text): Gemma 2's layout plus per-head q/k RMSNorms, and rotary tables per layer type.

Facts (transformers 5, ``models/gemma3/modeling_gemma3.py``, ``Gemma3ForCausalLM``, model type
``gemma3_text``; Gemma Team 2025, https://arxiv.org/abs/2503.19786):

- ``q_norm`` / ``k_norm`` act on one head's ``head_dim`` features and are shared by all heads (as in
  Qwen3): removing heads leaves them untouched; they are the attention's fixed parameters.
- Sliding-window (local) and global layers (``layer_types``, 5 local : 1 global in the released models)
  use different rotary bases: the model computes one (cos, sin) per layer type, and each layer takes its own.
- Soft-capping is off by default (``attn_logit_softcapping`` / ``final_logit_softcapping`` None) but
  honoured when set, as Gemma 2's; sandwich norms, scaled and tied embeddings as Gemma 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supernet.io.adapters.gemma2 import Gemma2Adapter

if TYPE_CHECKING:
    import torch
    from torch import nn
    from transformers import PreTrainedConfig, PreTrainedModel


class Gemma3TextAdapter(Gemma2Adapter):
    model_types = ("gemma3_text",)
    gguf_refusal = ("llama.cpp's deci graph has none of its GeGLU MLP, post-norms, scaled embeddings, per-head "
                    "q/k norms and sliding-window layers")  # fmt: skip

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group") -> None:
        super().__init__(config, attn_unit=attn_unit)
        self.layer_types: list[str] = list(config.layer_types)

    def fixed_params(self, kind: str) -> int:
        return 2 * self.geometry.head_dim if kind == "attn" else 0

    def attention_type(self, layer: nn.Module) -> str:
        """``layer_types[i]`` of the layer (its attention may be removed: the layer keeps its index)."""
        return self.layer_types[layer.layer_idx]

    def rotary(self, model: PreTrainedModel, hidden_states: torch.Tensor, position_ids: torch.Tensor) -> dict:
        """One rotary (cos, sin) per layer type, as Gemma3TextModel.forward builds them."""
        rotary = model.model.rotary_emb
        return {kind: rotary(hidden_states, position_ids, kind) for kind in sorted(set(self.layer_types))}

    def layer_position_embeddings(self, layer: nn.Module, context: dict):
        return context["position_embeddings"][self.attention_type(layer)]
