"""Reading ``allocation.json`` for charts: which modules a chart shows and how many units each keeps."""

from __future__ import annotations

from supernet.kinds import ATTN, EXPERTS, MLP, SHARED


def module_units(allocation: dict, entry: dict, kind: str) -> tuple[int, int]:
    """(kept, total) units of one module in a layer ``entry`` of ``allocation.json``'s ``allocation``: GQA
    groups (or heads), MLP channels, or the experts (kind ``experts``, or ``mlp`` where a mixture's MLP units
    are experts)."""
    if kind == EXPERTS or (kind == MLP and allocation.get("mlp_unit") == "expert"):
        return entry["experts"], entry["experts_total"]
    return entry[f"{kind}_units"], entry[f"{kind}_units_total"]


def chart_kinds(allocation: dict) -> tuple[str, ...]:
    """The modules a chart of ``allocation.json``'s ``allocation`` shows: attention and MLP, and a mixture's
    expert count beside its experts' width where the MLP's units are channels."""
    layers = allocation["layers"]
    both = allocation.get("mlp_unit", "channel") == "channel" and bool(layers) and "experts" in layers[0]
    shared = bool(layers) and "shared_units" in layers[0]
    return (ATTN, MLP, *((EXPERTS,) if both else ()), *((SHARED,) if shared else ()))
