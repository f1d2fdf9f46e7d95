"""An allocation: how many units every module keeps, and its JSON form.

Levels become allocations through ``supernet.levels.LevelGrid.allocation``; the rules that choose
them are in ``supernet/allocators.py``.

``allocation.json`` holds ``{"layers": [{"attn_units", "attn_units_total", "mlp_units",
"mlp_units_total"}, ...]}``: one entry per decoder layer, units kept.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from supernet.files import write_json


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
        write_json(Path(path), self.to_json())
