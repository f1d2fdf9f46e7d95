"""Gemma 2: Llama's projections (q/k/v/o, gate/up/down) with a GeGLU MLP, and four norms per layer.

Facts (transformers 5, ``models/gemma2/modeling_gemma2.py``; Gemma Team 2024, https://arxiv.org/abs/2408.00118):

- ``head_dim`` (256 in Gemma-2-2B) is its own config field, not hidden / heads: the base geometry reads it.
- Sandwich norms: ``post_attention_layernorm`` and ``post_feedforward_layernorm`` normalise the output
  of o_proj and down_proj before the residual add. A compensation bias therefore goes through that norm:
  it still matches the dense output's mean before the norm (FLAP's b += W[:, D] mean[D]), and the live
  model and the exported one compute the same thing, since the export carries the same bias.
- Scaled embeddings (x sqrt(hidden)) live in ``Gemma2TextScaledWordEmbedding``, so ``embed_tokens`` gives them.
- Attention soft-capping (``attn_logit_softcapping``) and ``query_pre_attn_scalar`` act per head and do
  not depend on how many heads there are; the final logits are soft-capped:
  logits = c * tanh(lm_head(norm(h)) / c), c = ``final_logit_softcapping``.
- Alternating sliding-window and global layers (``layer_types``): each attention names its ``layer_type``.
- Tied embeddings (``tie_word_embeddings``), read by the base geometry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from supernet.io.adapters.llama import LlamaAdapter

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel


def soft_cap(logits: torch.Tensor, cap: float | None) -> torch.Tensor:
    """c * tanh(x / c) (Gemma 2's logit soft-capping); x itself when c is None."""
    return logits if cap is None else cap * (logits / cap).tanh()


class Gemma2Adapter(LlamaAdapter):
    model_types = ("gemma2",)
    gguf_refusal = ("llama.cpp's deci graph has none of its GeGLU MLP, post-norms, scaled embeddings, "
                    "soft-capping and sliding-window layers")  # fmt: skip

    def logits(self, model: PreTrainedModel, hidden_states: torch.Tensor) -> torch.Tensor:
        """c * tanh(head(norm(h_L)) / c) as Gemma2ForCausalLM computes it. [batch, tokens, hidden] -> [.., vocab]"""
        return soft_cap(super().logits(model, hidden_states), getattr(model.config, "final_logit_softcapping", None))
