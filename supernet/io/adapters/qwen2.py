"""Qwen2: Llama's layout plus biases on q/k/v, which are sliced with their rows."""

from __future__ import annotations

from supernet.io.adapters.llama import LlamaAdapter


class Qwen2Adapter(LlamaAdapter):
    model_types = ("qwen2",)

    def has_bias(self, kind: str, name: str) -> bool:
        return kind == "attn" and name in ("q_proj", "k_proj", "v_proj")
