"""Forward FLOPs of a (pruned) decoder-only LM from its per-layer shapes: the ideal speedup of pruning.

For a model whose decoder layer l holds W_l weights in its Linear layers and H_l query heads of size d,
with an LM head of W_head weights (Kaplan et al. 2020, https://arxiv.org/abs/2001.08361, Table 1,
counting the causal attention exactly):

    prefill of B sequences of T tokens, logits of the last position only (as ``generate`` does):
        F_prefill = B * [ 2 T sum_l W_l + sum_l 4 d H_l T (T + 1) / 2 + 2 W_head ]
    one decode step of B sequences attending to c cached positions:
        F_decode(c) = B * [ 2 sum_l W_l + sum_l 4 d H_l c + 2 W_head ]

(Q K^T and A V cost 2 d FLOPs per head per query-key pair each.) Norms, rotary embeddings, activations
and the embedding lookup are left out. The ideal speedup of a pruned model is F_dense / F_pruned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from supernet.adapters import DecoderAdapter


@dataclass(frozen=True)
class Shape:
    layer_weights: tuple[int, ...]  # W_l: Linear weights of each decoder layer
    layer_heads: tuple[int, ...]  # H_l: query heads of each decoder layer (0 when attention is removed)
    head_dim: int  # d
    head_weights: int  # W_head: weights of the LM head

    @property
    def block_weights(self) -> int:
        return sum(self.layer_weights)


def model_shape(model: PreTrainedModel, adapter: DecoderAdapter) -> Shape:
    """Per-layer Linear weights and query heads of a dense model or of a materialised pruned one."""
    geo = adapter.geometry
    layers = adapter.decoder_layers(model)
    weights = tuple(sum(m.weight.numel() for m in layer.modules() if isinstance(m, nn.Linear)) for layer in layers)
    per_layer = getattr(model.config, "layer_shapes", None)  # a StrataConfig
    heads = tuple(s["num_attention_heads"] for s in per_layer) if per_layer else (geo.num_heads,) * len(layers)
    return Shape(weights, heads, geo.head_dim, model.get_output_embeddings().weight.numel())


def prefill_flops(shape: Shape, *, batch: int, tokens: int) -> int:
    """F_prefill (module docstring): B sequences of T tokens, logits of the last position."""
    attention = sum(4 * shape.head_dim * h * tokens * (tokens + 1) // 2 for h in shape.layer_heads)
    return batch * (2 * tokens * shape.block_weights + attention + 2 * shape.head_weights)


def decode_flops(shape: Shape, *, batch: int, context: int) -> int:
    """F_decode(c) (module docstring): one new token per sequence attending to ``context`` positions."""
    attention = sum(4 * shape.head_dim * h * context for h in shape.layer_heads)
    return batch * (2 * shape.block_weights + attention + 2 * shape.head_weights)
