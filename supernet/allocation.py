"""An allocation: how many units every module keeps; its JSON form and the uniform rule.

``allocation.json`` holds ``{"layers": [{"attn_units", "attn_units_total", "mlp_units",
"mlp_units_total"}, ...]}``: one entry per decoder layer, units kept.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supernet.errors import UsageError

if TYPE_CHECKING:
    from supernet.adapters import DecoderAdapter


@dataclass(frozen=True)
class LayerAllocation:
    attn_units: int
    attn_units_total: int
    mlp_units: int
    mlp_units_total: int


@dataclass(frozen=True)
class Allocation:
    layers: tuple[LayerAllocation, ...]

    def units(self, layer: int, kind: str) -> int:
        entry = self.layers[layer]
        return entry.attn_units if kind == "attn" else entry.mlp_units

    def to_json(self) -> dict:
        return {"layers": [asdict(entry) for entry in self.layers]}

    @classmethod
    def from_json(cls, data: dict) -> Allocation:
        return cls(tuple(LayerAllocation(**entry) for entry in data["layers"]))

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")


def kept_block_params(adapter: DecoderAdapter, allocation: Allocation) -> int:
    """Prunable parameters kept (units times unit cost), excluding norms and other fixed parameters."""
    return sum(
        entry.attn_units * adapter.unit_params("attn") + entry.mlp_units * adapter.unit_params("mlp")
        for entry in allocation.layers
    )


def prunable_params(adapter: DecoderAdapter) -> int:
    geo = adapter.geometry
    per_layer = geo.num_kv_heads * adapter.unit_params("attn") + geo.intermediate * adapter.unit_params("mlp")
    return geo.num_layers * per_layer


def uniform(adapter: DecoderAdapter, keep: float, *, channel_quantum: int = 8) -> Allocation:
    """Same widths in every layer, as close to ``keep`` of the prunable parameters as the grid allows.

    Attention keeps round(keep * groups) whole GQA groups; the MLP width (a multiple of
    ``channel_quantum``) then absorbs the rest of the budget, so the total is within one quantum.
    """
    if not 0.0 < keep <= 1.0:
        raise UsageError(f"budget.keep={keep} is outside (0, 1]: give the fraction of parameters to keep")
    geo = adapter.geometry
    attn_cost, mlp_cost = adapter.unit_params("attn"), adapter.unit_params("mlp")
    target = keep * prunable_params(adapter) / geo.num_layers  # per layer
    groups = min(geo.num_kv_heads, round(keep * geo.num_kv_heads))
    channels = (target - groups * attn_cost) / mlp_cost
    channels = int(min(geo.intermediate, max(0, round(channels / channel_quantum) * channel_quantum)))
    if groups == 0 and channels == 0:
        smallest = min(attn_cost, channel_quantum * mlp_cost) * geo.num_layers / prunable_params(adapter)
        raise UsageError(
            f"budget.keep={keep} leaves no unit in any module on this grid: use keep >= {smallest:.4f} "
            "or a smaller supernet.channel_quantum"
        )
    entry = LayerAllocation(groups, geo.num_kv_heads, channels, geo.intermediate)
    return Allocation(tuple(entry for _ in range(geo.num_layers)))
