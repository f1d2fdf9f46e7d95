"""``params`` and ``flops``: trivial baselines counted from the live model's shapes.

    params = parameters of the live model (a tied embedding counts once)
    flops  = forward FLOPs per token over causal windows of T tokens with logits at every position,
             F(T, T(T+1)/2, T) / T = 2 (sum_l W_l + W_head) + 2 d (T + 1) sum_l H_l   (supernet/space/flops.py)

at sequence length T (``seq_len``; default: the batches' length).

Both are *higher = more capacity*, but a pruned candidate is better when it keeps more, so both are
negated: score = -params, -flops (lower is better). On an exact parameter budget ``params`` is
constant across candidates: it ranks nothing, which is its point as a baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from proxies.base import Proxy
from supernet.space import flops
from supernet.space.flops import model_shape

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from transformers import PreTrainedModel

    from supernet.variants.switch import Switcher


def live_heads(switcher: Switcher, layer: int) -> int:
    """Query heads the live attention of ``layer`` keeps (0 when the sub-block is removed)."""
    variant = switcher.current[layer, "attn"]
    if variant is None:
        return switcher.adapter.geometry.num_heads
    return switcher.adapter.attention_shape(variant.units.numel())[0]


def forward_flops(model: PreTrainedModel, switcher: Switcher, seq_len: int) -> float:
    """Forward FLOPs per token of the live model over causal windows of ``seq_len`` tokens, logits at every
    position: F(T, T(T+1)/2, T) / T (supernet/space/flops.py)."""
    adapter = switcher.adapter
    heads = [live_heads(switcher, i) for i in range(adapter.geometry.num_layers)]
    shape = model_shape(model, adapter, heads)
    return flops.forward_flops(shape, queries=seq_len, pairs=flops.causal_pairs(seq_len), logits=seq_len) / seq_len


class ParamsProxy(Proxy):
    """Minus the live model's parameter count."""

    name = "params"

    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        return -float(sum(p.numel() for p in model.parameters()))


class FlopsProxy(Proxy):
    """Minus the forward FLOPs per token at ``seq_len`` (None: the batches' sequence length)."""

    name = "flops"

    def __init__(self, switcher: Switcher, *, seq_len: int | None = None) -> None:
        super().__init__(switcher)
        self.seq_len = seq_len

    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        seq_len = self.seq_len if self.seq_len is not None else batches[0].shape[1]
        return -float(forward_flops(model, self.switcher, seq_len))
