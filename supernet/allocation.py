"""An allocation: how many units every module keeps, and its JSON form.

Levels become allocations through ``supernet.levels.LevelGrid.allocation``; the rules that choose
them are in ``supernet/allocators.py``.

``allocation.json`` holds ``{"layers": [{"attn_units", "attn_units_total", "mlp_units",
"mlp_units_total"}, ...]}``: one entry per decoder layer, units kept; a mixture of experts' layers also
hold ``"experts"`` (kept) and ``"experts_total"``, and ``mlp_units`` is then each expert's width.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from supernet.files import write_json


@dataclass(frozen=True)
class LayerAllocation:
    attn_units: int
    attn_units_total: int
    mlp_units: int  # MLP channels (a mixture: each expert's channels)
    mlp_units_total: int
    experts: int | None = None  # a mixture of experts: the experts kept (the MLP kind's units)
    experts_total: int | None = None


def module_units(entry: dict, kind: str) -> tuple[int, int]:
    """(kept, total) units of one module in an ``allocation.json`` layer entry: GQA groups (or heads), MLP
    channels, or in a mixture of experts the experts."""
    if kind == "mlp" and "experts" in entry:
        return entry["experts"], entry["experts_total"]
    return entry[f"{kind}_units"], entry[f"{kind}_units_total"]


@dataclass(frozen=True)
class Allocation:
    layers: tuple[LayerAllocation, ...]

    def units(self, layer: int, kind: str) -> int:
        """Units a module keeps: GQA groups (or heads), MLP channels, or a mixture's experts."""
        entry = self.layers[layer]
        if kind == "attn":
            return entry.attn_units
        return entry.mlp_units if entry.experts is None else entry.experts

    def to_json(self) -> dict:
        return {"layers": [{k: v for k, v in asdict(entry).items() if v is not None} for entry in self.layers]}

    @classmethod
    def from_json(cls, data: dict) -> Allocation:
        return cls(tuple(LayerAllocation(**entry) for entry in data["layers"]))

    def save(self, path: Path) -> None:
        write_json(Path(path), self.to_json())
