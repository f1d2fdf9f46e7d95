"""Logits of the live candidate that reuse the hidden states of its unchanged prefix of layers.

A decoder layer's output depends only on its input and its own variants, so the hidden states entering
layer i are a function of the tokens and of the variants of layers 0..i-1:

    h_0 = embed(x),    h_{i+1} = layer_i(h_i; variants of layer i),    logits = head(norm(h_L))

Offspring of one parent differ from it in a few modules (a level-switch mutation moves 1-4 pairs), so
when the first changed module is in layer j, h_0..h_j are the parent's (and every sibling's whose own
first change is at or after j). ``PrefixForward`` keeps h_i of the candidates it ran, keyed by the batch
and the variants of layers 0..i-1 as the :class:`~supernet.variants.switch.Switcher` installed them; a new
candidate starts at the deepest stored h_i of its own prefix and runs only layers i..L-1. Results are
those of a full forward (the same layer calls on the same inputs).

Memory: a stored h_i costs tokens * hidden * bytes; the least recently used are dropped past
``max_bytes`` (0 disables reuse: every call is a full forward). The stored tensors are the layers'
own outputs, kept by reference, never copied. This is the "reuse of the parent's computation" the
evolutionary pruners leave on the table (EvoPress, https://arxiv.org/abs/2410.14649, scores every
offspring from the embeddings).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from supernet.variants.switch import Switcher, Variant

DEFAULT_MAX_BYTES = 1 << 30  # 1 GiB of stored hidden states


class PrefixForward:
    """Forward passes of the live model through the switcher's adapter, reusing stored prefixes."""

    def __init__(self, switcher: Switcher, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        assert max_bytes >= 0, f"max_bytes must be >= 0, got {max_bytes}"
        self.switcher = switcher
        self.max_bytes = max_bytes
        # (batch, i, ids of the variants of layers < i) -> (those variants, kept alive so ids stay unique; h_i)
        self.store: OrderedDict[tuple, tuple[tuple[Variant | None, ...], torch.Tensor]] = OrderedDict()
        self.bytes = 0
        self.contexts: dict[int, dict] = {}  # batch -> positions, rotary, masks
        self.layers_run = 0  # decoder-layer calls made (for the benchmarks)
        self.layers_reused = 0  # decoder-layer calls saved by a stored prefix

    def clear(self) -> None:
        self.store.clear()
        self.contexts.clear()
        self.bytes = 0

    def _prefix(self) -> tuple[tuple[Variant | None, ...], ...]:
        """The live variants of every layer, as the switcher installed them: per layer, every module (attention,
        MLP, and a mixture's expert count where it is a module of its own)."""
        layers: list[list[Variant | None]] = [[] for _ in self.switcher.layers]
        for (i, _), variant in self.switcher.current.items():  # keys in layer order, kinds in a fixed order
            layers[i].append(variant)
        return tuple(tuple(modules) for modules in layers)

    @staticmethod
    def _key(batch: int, prefix: tuple, i: int) -> tuple:
        return (batch, i, tuple(id(v) for layer in prefix[:i] for v in layer))

    def _deepest(self, batch: int, prefix: tuple) -> tuple[int, torch.Tensor | None]:
        """The deepest stored h_i of this prefix (i, h_i), or (0, None)."""
        for i in range(len(prefix), -1, -1):
            key = self._key(batch, prefix, i)
            if key in self.store:
                self.store.move_to_end(key)
                return i, self.store[key][1]
        return 0, None

    def _keep(self, batch: int, prefix: tuple, i: int, hidden: torch.Tensor) -> None:
        if self.max_bytes == 0:
            return
        key = self._key(batch, prefix, i)
        if key in self.store:
            return
        size = hidden.numel() * hidden.element_size()
        self.store[key] = (tuple(v for layer in prefix[:i] for v in layer), hidden)
        self.bytes += size
        while self.bytes > self.max_bytes and self.store:
            _, (_, dropped) = self.store.popitem(last=False)
            self.bytes -= dropped.numel() * dropped.element_size()

    @torch.no_grad()
    def logits(self, model: PreTrainedModel, batch: int, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of the live candidate on batch number ``batch`` (input_ids [b, T]) -> [b, T, vocab]."""
        adapter = self.switcher.adapter
        layers = adapter.decoder_layers(model)
        prefix = self._prefix()
        start, hidden = self._deepest(batch, prefix)
        if hidden is None:
            hidden = adapter.embed(model, input_ids)  # [b, T, hidden]
            self._keep(batch, prefix, 0, hidden)
        if batch not in self.contexts:
            self.contexts[batch] = adapter.layer_context(model, hidden)
        context = self.contexts[batch]
        self.layers_reused += start
        for i in range(start, len(layers)):
            hidden = adapter.run_layer(layers[i], hidden, context)  # h_{i+1}: [b, T, hidden]
            self.layers_run += 1
            if i + 1 < len(layers):
                self._keep(batch, prefix, i + 1, hidden)
        return adapter.logits(model, hidden)  # head(norm(h_L))
