"""Forward FLOPs of a decoder-only LM: the one convention of every FLOP count in strata.

A multiply-add is 2 FLOPs (Kaplan et al. 2020, https://arxiv.org/abs/2001.08361, Table 1). For a model
whose decoder layer l holds W_l weights in its Linear layers and H_l query heads of dimension d, with
an LM head of W_head weights, a forward pass of Q query tokens over P query-key pairs, with logits at
L positions, costs

    F(Q, P, L) = 2 Q sum_l W_l  +  4 d P sum_l H_l  +  2 L W_head

(Q K^T and A V cost 2 d each per head and pair). Causal attention over T tokens has T (T + 1) / 2
pairs. Norms, rotary embeddings, activations and the embedding lookup are left out. Uses:

- ``budget.kind=flops`` (supernet/space/budget.py): a unit's share of F on one sequence of T tokens;
- the ``flops`` proxy (proxies/params.py): F(T, T(T+1)/2, T) / T per token of the live model;
- prefill of B sequences of T tokens with the last position's logits, B F(T, T(T+1)/2, 1), and one
  decode step attending to c cached positions, B F(1, c, 1) (bench/speed.py: the ideal speedup).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel

    from supernet.io.adapters.base import DecoderAdapter


def linear_flops(weights: int, tokens: int) -> int:
    """2 W FLOPs per token through Linear layers of W weights."""
    return 2 * weights * tokens


def attention_flops(head_dim: int, heads: int, pairs: int) -> int:
    """4 d FLOPs per query head and query-key pair (Q K^T and A V)."""
    return 4 * head_dim * heads * pairs


def causal_pairs(tokens: int) -> int:
    """Query-key pairs of causal attention over ``tokens`` positions: T (T + 1) / 2."""
    return tokens * (tokens + 1) // 2


@dataclass(frozen=True)
class Shape:
    layer_weights: tuple[int, ...]  # W_l: Linear weights of each decoder layer
    layer_heads: tuple[int, ...]  # H_l: query heads of each decoder layer (0 when attention is removed)
    head_dim: int  # d
    head_weights: int  # W_head: weights of the LM head

    @property
    def block_weights(self) -> int:
        return sum(self.layer_weights)


def model_shape(model: PreTrainedModel, adapter: DecoderAdapter, heads: Sequence[int] | None = None) -> Shape:
    """Per-layer Linear weights and query heads of a model as it stands (dense, switched or materialised).

    ``heads``: the query heads of every layer; None reads them from a saved pruned model's config
    (``layer_shapes``) or takes the dense count."""
    geo = adapter.geometry
    layers = adapter.decoder_layers(model)
    weights = tuple(sum(m.weight.numel() for m in layer.modules() if isinstance(m, nn.Linear)) for layer in layers)
    if heads is None:
        per_layer = getattr(model.config, "layer_shapes", None)  # a StrataConfig
        heads = [s["num_attention_heads"] for s in per_layer] if per_layer else [geo.num_heads] * len(layers)
    head = model.get_output_embeddings()
    return Shape(weights, tuple(heads), geo.head_dim, head.weight.numel() if head is not None else 0)


def forward_flops(shape: Shape, *, queries: int, pairs: int, logits: int) -> int:
    """F(Q, P, L) of the module docstring."""
    return (
        linear_flops(shape.block_weights, queries)
        + attention_flops(shape.head_dim, sum(shape.layer_heads), pairs)
        + linear_flops(shape.head_weights, logits)
    )


def prefill_flops(shape: Shape, *, batch: int, tokens: int) -> int:
    """B sequences of T tokens, logits of the last position (as ``generate`` does)."""
    return batch * forward_flops(shape, queries=tokens, pairs=causal_pairs(tokens), logits=1)


def decode_flops(shape: Shape, *, batch: int, context: int) -> int:
    """One new token per sequence attending to ``context`` positions."""
    return batch * forward_flops(shape, queries=1, pairs=context, logits=1)
