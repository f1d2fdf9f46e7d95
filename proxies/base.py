"""The proxy interface: score the live model, with a candidate applied, on given token batches.

Lifecycle (as Optuna's samplers document theirs):

1. ``proxy = PROXIES[name](switcher, **options)`` (``proxies.make_proxy``); ``switcher`` is the
   :class:`~supernet.variants.switch.Switcher` that installs candidates in the model (its adapter says where
   modules live, its current variants say which units are kept).
2. ``proxy.prepare(model, batches)`` once, with the dense model installed: caches what the proxy
   compares against (teacher logits for ``kl``, dense gradients for ``trace_correlation``).
3. ``proxy.score(model, batches)`` per candidate, after the candidate has been applied in place.
   Lower is better for every proxy (each module documents its sign); the same ``batches`` as in
   ``prepare`` for proxies that cache per batch.
4. ``proxy.cache_bytes()``: memory held by the cache, for the report.

``batches`` is a sequence of token tensors ``[batch, seq_len]`` (``as_batches`` cuts a ``[n, seq_len]``
tensor). Proxies never leave ``.grad``, hooks or changed ``requires_grad`` flags behind.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel

    from supernet.variants.switch import Switcher


def as_batches(tokens: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Cut ``tokens`` [n, seq_len] into consecutive batches [<= batch_size, seq_len]."""
    assert tokens.dim() == 2, f"tokens must be [n, seq_len], got {tuple(tokens.shape)}"
    assert batch_size >= 1, f"batch_size must be >= 1, got {batch_size}"
    return [tokens[i : i + batch_size] for i in range(0, tokens.shape[0], batch_size)]


def model_device(model: PreTrainedModel) -> torch.device:
    return next(model.parameters()).device


class Proxy:
    """Scores a candidate; lower is better. Subclasses set ``name`` and override
    ``score`` (and ``prepare`` / ``cache_bytes`` when they cache dense-model quantities)."""

    name: ClassVar[str] = ""
    standalone: ClassVar[bool] = False  # whether score_standalone can score a model outside the switcher

    def __init__(self, switcher: Switcher) -> None:
        self.switcher = switcher

    def prepare(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> None:
        """Cache dense-model quantities; called once with the dense model installed."""

    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        raise NotImplementedError

    def score_standalone(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        """``score`` of a model that is not the switcher's live model (a materialised, e.g. healed, copy: plain
        forwards, no switcher). Only proxies that read the model's outputs alone can (``standalone``)."""
        raise NotImplementedError(f"proxy {self.name!r} scores the switcher's live model only")

    def cache_bytes(self) -> int:
        """Bytes held by what ``prepare`` cached."""
        return 0
