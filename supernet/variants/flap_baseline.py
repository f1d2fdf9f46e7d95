"""FLAP's own pruning installed as the baseline a search is measured against (An et al. 2024,
https://arxiv.org/abs/2312.11983, "AL-AM" with bias compensation): FLAP's allocation
(:func:`supernet.space.flap.flap_levels`), within each module its highest-fluctuation units, and the removed
channels' mean contribution moved into the output projection's bias, b = W[:, R] mean(X[:, R])
(:func:`supernet.variants.compensation.flap_bias`). ``FlapBaseline.approximated`` says what the grid changed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from supernet.kinds import EXPERTS, MLP, ModuleKey
from supernet.space.flap import flap_levels
from supernet.space.grid import LevelGrid
from supernet.variants import criteria
from supernet.variants.compensation import flap_bias
from supernet.variants.switch import Variant, kept_units

if TYPE_CHECKING:
    from supernet.variants.build import Supernet
    from supernet.variants.switch import Switcher

FLAP_METHOD = (
    "FLAP (An et al. 2024): fluctuation scores standardised per module, units kept above one global "
    "threshold by cost, removed channels' mean moved into the bias"
)


@dataclass
class FlapBaseline:
    """FLAP's allocation on a full-range grid and the variants that install it."""

    grid: LevelGrid  # the supernet's grid with every module free from 0 to dense
    levels: list[int]  # on ``grid``, on budget
    variants: dict[ModuleKey, Variant | None]
    approximated: dict  # what differs from FLAP's exact method, for metrics.json

    def install(self, switcher: Switcher) -> int:
        return switcher.apply(self.variants)


def flap_baseline(net: Supernet, switcher: Switcher) -> FlapBaseline:
    """FLAP's global allocation of ``net``'s units on its budget, with FLAP's bias compensation.

    ``net`` must hold the fluctuation scores and mean inputs of every module (every build does);
    ``switcher`` gives the dense output projections."""
    adapter = switcher.adapter
    grid, levels, counts = flap_levels(net.fluctuation, net.grid)
    variants: dict[ModuleKey, Variant | None] = {}
    for m, lv in zip(grid.modules, levels, strict=True):
        key = (m.layer, m.kind)
        count = m.units(lv)
        if count == m.total:
            variants[key] = None
            continue
        if m.kind in (MLP, EXPERTS) and adapter.moe:  # experts or their channels, by the supernet's ranking
            variants[key] = Variant(kept_units(net.rankings[key], count))
            continue
        ranking = criteria.ranking(net.fluctuation[key], adapter.unit_step(m.kind))
        units = kept_units(ranking, count)
        weight = switcher.dense_params[key][adapter.output_projection(m.kind)][0].detach().cpu().double()  # [out, in]
        removed = torch.ones(weight.shape[1], dtype=torch.bool)
        removed[adapter.output_columns(units, m.kind)] = False
        bias = flap_bias(weight[:, removed], net.means[key][removed])  # [out]
        variants[key] = Variant(units, bias.float(), None)
    moved = [abs(m.units(lv) - c) for lv, c, m in zip(levels, counts, grid.modules, strict=True)]
    approximated = {
        "rule": "per-module kept counts rounded to the level step and repaired onto the budget rule",
        "steps": {k: grid.step(k) for k in ("attn", "mlp")},
        "units_moved": sum(moved),
        "modules_moved": sum(1 for d in moved if d),
        "exact_units_cost": int(sum(c * grid.unit_cost_dense(i) for i, c in enumerate(counts))),
    }
    return FlapBaseline(grid, levels, variants, approximated)
