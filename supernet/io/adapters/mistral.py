"""Mistral: Llama's layout; its sliding window only changes masking, not where units live."""

from __future__ import annotations

from supernet.io.adapters.llama import LlamaAdapter


class MistralAdapter(LlamaAdapter):
    model_types = ("mistral",)

    def attention_type(self, layer) -> str:
        """Every Mistral layer uses the sliding window when the config sets one."""
        return "sliding_attention" if self.sliding_window else "full_attention"
