"""Mistral: Llama's layout; its sliding window only changes masking, not where units live."""

from __future__ import annotations

from supernet.adapters.llama import LlamaAdapter


class MistralAdapter(LlamaAdapter):
    model_types = ("mistral",)
