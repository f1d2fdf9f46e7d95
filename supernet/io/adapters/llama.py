"""Llama (and the layout shared by its GQA relatives): q/k/v/o attention, SwiGLU MLP, no biases."""

from __future__ import annotations

from supernet.io.adapters.base import DecoderAdapter


class LlamaAdapter(DecoderAdapter):
    model_types = ("llama",)
