"""An allocation: how many units every module keeps, and its JSON form.

Levels become allocations through ``supernet.levels.LevelGrid.allocation``; the rules that choose
them are in ``supernet/allocators.py``.

``allocation.json`` holds ``{"layers": [{"attn_units", "attn_units_total", "mlp_units",
"mlp_units_total"}, ...]}``: one entry per decoder layer, units kept; a mixture of experts' layers also
hold ``"experts"`` (kept) and ``"experts_total"``, and ``mlp_units`` is then each expert's width. Where the
mixture's MLP units are whole experts, ``"mlp_unit": "expert"`` says so.
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


def module_units(allocation: dict, entry: dict, kind: str) -> tuple[int, int]:
    """(kept, total) units of one module in a layer ``entry`` of ``allocation.json``'s ``allocation``: GQA
    groups (or heads), MLP channels, or the experts where a mixture's MLP units are experts."""
    if kind == "mlp" and allocation.get("mlp_unit") == "expert":
        return entry["experts"], entry["experts_total"]
    return entry[f"{kind}_units"], entry[f"{kind}_units_total"]


@dataclass(frozen=True)
class Allocation:
    layers: tuple[LayerAllocation, ...]
    mlp_unit: str = "channel"  # what the MLP's units are: channels (of every expert, in a mixture) | expert

    def units(self, layer: int, kind: str) -> int:
        """Units a module keeps: GQA groups (or heads), MLP channels, or a mixture's experts."""
        entry = self.layers[layer]
        if kind == "attn":
            return entry.attn_units
        return entry.experts if self.mlp_unit == "expert" else entry.mlp_units

    def to_json(self) -> dict:
        layers = [{k: v for k, v in asdict(entry).items() if v is not None} for entry in self.layers]
        return {"layers": layers, **({"mlp_unit": "expert"} if self.mlp_unit == "expert" else {})}

    @classmethod
    def from_json(cls, data: dict) -> Allocation:
        layers = tuple(LayerAllocation(**entry) for entry in data["layers"])
        return cls(layers, mlp_unit=data.get("mlp_unit", "channel"))

    def save(self, path: Path) -> None:
        write_json(Path(path), self.to_json())
