"""Phi-3: fused projections, Mistral's masking (one sliding window for every layer when set).

Facts (transformers 5, ``models/phi3/modeling_phi3.py``; Abdin et al. 2024, https://arxiv.org/abs/2404.14219):

- ``qkv_proj`` holds the query rows, then the key rows, then the value rows (heads * head_dim,
  kv_heads * head_dim, kv_heads * head_dim): a GQA group owns a block of rows in each of the three,
  and a sliced ``qkv_proj`` keeps the three blocks in that order.
- ``gate_up_proj`` holds the gate rows, then the up rows (``chunk(2)`` splits them): a channel owns
  row c and row intermediate + c.
- The attention splits ``qkv_proj``'s output at ``config.num_attention_heads * head_dim`` and
  ``self.num_key_value_heads * head_dim``: a sliced attention gets its own config copy with the kept
  query heads and the kept K/V heads as attribute (:meth:`Phi3Adapter.resize_attention`). The export
  keeps the projections fused (each layer is a ``Phi3DecoderLayer`` of its own widths).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supernet.io.adapters.base import Projection
from supernet.io.adapters.mistral import MistralAdapter

if TYPE_CHECKING:
    from torch import nn


class Phi3Adapter(MistralAdapter):
    model_types = ("phi3",)
    attention_plan = (
        Projection("qkv_proj", "out", ("query", "kv", "kv")),
        Projection("o_proj", "in", "query"),
    )
    mlp_plan = (
        Projection("gate_up_proj", "out", ("channel", "channel")),
        Projection("down_proj", "in", "channel"),
    )
    gguf_names = {"qkv_proj": ("attn_q", "attn_k", "attn_v"), "o_proj": ("attn_output",),
                  "gate_up_proj": ("ffn_gate", "ffn_up"), "down_proj": ("ffn_down",)}  # fmt: skip

    def resize_attention(self, module: nn.Module, heads: int, kv_heads: int) -> None:
        super().resize_attention(module, heads, kv_heads)
        module.config = self.sized_config(module.config, num_attention_heads=heads, num_key_value_heads=kv_heads)
        module.num_key_value_heads = kv_heads
