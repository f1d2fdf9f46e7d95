"""An allocation: how many units every module keeps, and its JSON form.

Levels become allocations through ``supernet.space.grid.LevelGrid.allocation``; the rules that choose
them are in ``supernet/space/allocators.py``.

``allocation.json`` holds ``{"layers": [{"attn_units", "attn_units_total", "mlp_units",
"mlp_units_total"}, ...]}``: one entry per decoder layer, units kept; a mixture of experts' layers also
hold ``"experts"`` (kept) and ``"experts_total"`` (and Qwen2-MoE's ``"shared_units"``, ``"shared_units_total"``:
its shared expert's channels), and ``mlp_units`` is then each expert's width. Where the
mixture's MLP units are whole experts, ``"mlp_unit": "expert"`` says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from supernet.kinds import EXPERTS, SHARED


@dataclass(frozen=True)
class LayerAllocation:
    attn_units: int
    attn_units_total: int
    mlp_units: int  # MLP channels (a mixture: each expert's channels)
    mlp_units_total: int
    experts: int | None = None  # a mixture of experts: the experts kept (the MLP kind's units)
    experts_total: int | None = None
    shared_units: int | None = None  # Qwen2-MoE: the shared expert's channels kept
    shared_units_total: int | None = None


@dataclass(frozen=True)
class Allocation:
    layers: tuple[LayerAllocation, ...]
    mlp_unit: str = "channel"  # what the MLP's units are: channels (of every expert, in a mixture) | expert

    def units(self, layer: int, kind: str) -> int:
        """Units a module keeps: GQA groups (or heads), MLP channels, or a mixture's experts (the MLP kind's
        units where they are whole experts; the ``experts`` kind's where a layer has both)."""
        entry = self.layers[layer]
        if kind == "attn":
            return entry.attn_units
        if kind == EXPERTS:  # a mixture's expert count beside its experts' width (expert_unit=both)
            return entry.experts
        if kind == SHARED:  # Qwen2-MoE's shared expert
            return entry.shared_units
        return entry.experts if self.mlp_unit == "expert" else entry.mlp_units

    def to_json(self) -> dict:
        layers = [{k: v for k, v in asdict(entry).items() if v is not None} for entry in self.layers]
        return {"layers": layers, **({"mlp_unit": "expert"} if self.mlp_unit == "expert" else {})}
