"""Reading an allocation back, as the tests do: ``allocation.json`` to an ``Allocation``, and an ``Allocation`` to the
levels of a grid (the inverse of ``LevelGrid.allocation``)."""

from __future__ import annotations

from supernet.errors import UsageError
from supernet.kinds import EXPERTS
from supernet.space.allocation import Allocation, LayerAllocation
from supernet.space.grid import LevelGrid


def allocation_from_json(data: dict) -> Allocation:
    """``Allocation.to_json``'s inverse."""
    layers = tuple(LayerAllocation(**entry) for entry in data["layers"])
    return Allocation(layers, mlp_unit=data.get("mlp_unit", "channel"))


def levels_of(grid: LevelGrid, allocation: Allocation) -> list[int]:
    """``grid.allocation``'s inverse (units must be multiples of each module's step, or the whole module)."""
    levels = []
    for m in grid.modules:
        units = allocation.units(m.layer, m.kind)
        if m.kind == EXPERTS and units == 0:  # a removed block: its expert count costs nothing
            levels.append(m.least)
        elif units == m.total:
            levels.append(m.top)
        elif units % m.step:
            raise UsageError(f"layer {m.layer} {m.kind} keeps {units} units, not a multiple of {m.step}")
        else:
            levels.append(units // m.step)
    return levels
