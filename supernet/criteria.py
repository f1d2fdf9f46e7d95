"""Local criteria: score every unit of a module; a module keeps its highest-scoring units.

Scores are per unit (GQA group or MLP channel), higher = more important. The unit's weights are
the rows / columns the adapter's plan assigns to it in every projection of the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from torch import nn

    from supernet.adapters import DecoderAdapter


def unit_weight_sq_norms(adapter: DecoderAdapter, module: nn.Module, kind: str) -> torch.Tensor:
    """Sum of squared weights each unit owns across the module's projections. [units]"""
    plan = adapter.attention_plan if kind == "attn" else adapter.mlp_plan
    units = adapter.units_total(kind)
    total = torch.zeros(units, dtype=torch.float64)
    for proj in plan:
        weight = getattr(module, proj.name).weight.detach().double()
        per_row = weight.pow(2).sum(dim=1 if proj.side == "out" else 0)  # [rows or cols]
        total += per_row.reshape(units, -1).sum(dim=1)  # rows are contiguous per unit
    return total


def magnitude(adapter: DecoderAdapter, module: nn.Module, kind: str) -> torch.Tensor:
    """Group L2 magnitude (Torch-Pruning): S_u = ||W_u||_2 over all weights unit u owns. [units]"""
    return unit_weight_sq_norms(adapter, module, kind).sqrt()


def ranking(scores: torch.Tensor) -> torch.Tensor:
    """Units from most to least important (stable, so ties keep index order). [units]"""
    return torch.argsort(scores, descending=True, stable=True)
