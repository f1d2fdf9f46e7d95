"""``params`` and ``flops``: trivial baselines counted from the live model's shapes.

    params = parameters of the live model (a tied embedding counts once)
    flops  = per token, forward:  2 * (weights of every Linear in the decoder layers + the LM head)
             + sum over layers of 4 * T * heads_l * head_dim     (Q K^T and A V, each 2 * T * d per head)

at sequence length T (``seq_len``; default: the batches' length), as in Kaplan et al. 2020
(https://arxiv.org/abs/2001.08361, Table 1), with the full T rather than the causal T / 2. Norms,
activations and the embedding lookup are left out.

Both are *higher = more capacity*, but a pruned candidate is better when it keeps more, so both are
negated: score = -params, -flops (lower is better). On an exact parameter budget ``params`` is
constant across candidates: it ranks nothing, which is its point as a baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from proxies.base import Proxy

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch
    from transformers import PreTrainedModel

    from supernet.switch import Switcher


def live_heads(switcher: Switcher, layer: int) -> int:
    """Query heads the live attention of ``layer`` keeps (0 when the sub-block is removed)."""
    variant = switcher.current[layer, "attn"]
    if variant is None:
        return switcher.adapter.geometry.num_heads
    return switcher.adapter.attention_shape(variant.units.numel())[0]


def forward_flops(model: PreTrainedModel, switcher: Switcher, seq_len: int) -> int:
    """Forward FLOPs per token at sequence length ``seq_len`` (see the module docstring)."""
    adapter = switcher.adapter
    linear = 0
    for layer in adapter.decoder_layers(model):
        linear += sum(m.weight.numel() for m in layer.modules() if isinstance(m, nn.Linear))
    head = model.get_output_embeddings()
    linear += head.weight.numel() if head is not None else 0
    attention = sum(
        4 * seq_len * live_heads(switcher, i) * adapter.geometry.head_dim for i in range(adapter.geometry.num_layers)
    )
    return 2 * linear + attention


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
