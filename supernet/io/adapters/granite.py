"""Granite (3.x): Llama's layout with four scalar multipliers.

Facts (transformers 5, ``models/granite/modeling_granite.py``):

- embeddings are multiplied by ``embedding_multiplier`` in ``GraniteModel.forward`` (not in ``embed_tokens``);
- each sub-block's output (bias included) is multiplied by ``residual_multiplier`` before the residual add,
  and attention scores use ``attention_multiplier`` as their scale: both inside the decoder layer, so
  calling the layer itself honours them, and a compensation bias is scaled as the dense output is;
- logits are divided by ``logits_scaling``: logits = lm_head(norm(h)) / logits_scaling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supernet.io.adapters.llama import LlamaAdapter

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


class GraniteAdapter(LlamaAdapter):
    model_types = ("granite",)
    gguf_refusal = "llama.cpp's deci graph has none of its embedding, residual, attention and logit multipliers"

    def embed(self, model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
        """embed_tokens(ids) * embedding_multiplier. input_ids: [batch, tokens] -> [batch, tokens, hidden]"""
        return super().embed(model, input_ids) * model.config.embedding_multiplier

    def logits(self, model: PreTrainedModel, hidden_states: torch.Tensor) -> torch.Tensor:
        """head(norm(h_L)) / logits_scaling. [batch, tokens, hidden] -> [batch, tokens, vocab]"""
        return super().logits(model, hidden_states) / model.config.logits_scaling
