"""Parameter counts: of a whole model, and of its transformer blocks (the default budget's unit)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import nn

    from supernet.io.adapters.base import DecoderAdapter


def count_params(module: nn.Module) -> int:
    """Distinct parameters (a tied embedding counts once)."""
    return sum(p.numel() for p in module.parameters())


def block_params(model: nn.Module, adapter: DecoderAdapter) -> int:
    """Parameters inside the decoder layers (attention, MLP and their norms)."""
    return sum(count_params(layer) for layer in adapter.decoder_layers(model))
