"""Coarse-to-fine (Týr-the-Pruner): the supernet of a refined grid, rebuilding only what changed.

A refined grid (``supernet.space.grids.refine_grid``) keeps every module's unit ranking, so a variant of the
new grid is again the best ``units`` units of that ranking. What may be missing is compensation: a
bias or refit columns exist for the coarse widths (anchors) of the old grid; an anchor of the finer
grid that the old one lacked needs the module's calibration statistics, so one calibration pass
computes exactly the missing anchors (and nothing when ``compensation=none``). Rankings are never
recomputed. With ``propagate=expected`` the missing levels see the refined grid's centre as the
upstream variants, as a fresh build would.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from supernet.variants.build import Supernet, calibrate_into, compensate_levels

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from supernet.io.adapters.base import DecoderAdapter
    from supernet.space.grid import LevelGrid
    from supernet.variants.config import SupernetConfig

log = logging.getLogger(__name__)


def carry_over(net: Supernet, grid: LevelGrid) -> tuple[Supernet, dict[tuple[int, str], list[int]]]:
    """The refined supernet with the old rankings and every compensation whose unit count survives,
    and the levels per module still missing their compensation."""
    refined = Supernet(grid, net.criterion, net.compensation)
    refined.rankings, refined.fluctuation = dict(net.rankings), dict(net.fluctuation)
    refined.means = dict(net.means)
    stored: dict[tuple[int, str, int], dict[str, torch.Tensor]] = {}  # (layer, kind, units) -> bias / weight
    for name, tensors in (("bias", net.biases), ("weight", net.weights)):
        for (layer, kind, level), tensor in tensors.items():
            units = net.grid.modules[net.index[layer, kind]].units(level)
            stored.setdefault((layer, kind, units), {})[name] = tensor
    missing: dict[tuple[int, str], list[int]] = {}
    for m in grid.modules:
        for level in m.anchors():
            found = stored.get((m.layer, m.kind, m.units(level)), {})
            if "bias" in found:
                refined.biases[m.layer, m.kind, level] = found["bias"]
            if "weight" in found:
                refined.weights[m.layer, m.kind, level] = found["weight"]
            if not found and net.compensation != "none" and (m.layer, m.kind) in net.means:  # experts: none
                missing.setdefault((m.layer, m.kind), []).append(level)
    return refined, missing


def refine_supernet(
    net: Supernet,
    grid: LevelGrid,
    *,
    model: PreTrainedModel,
    adapter: DecoderAdapter,
    calib_tokens: torch.Tensor,
    cfg: SupernetConfig,
    progress: bool = True,
) -> tuple[Supernet, int]:
    """The supernet of ``grid`` (a refinement of ``net.grid``) and how many levels were compensated anew.

    The model must be dense."""
    start = time.perf_counter()
    refined, missing = carry_over(net, grid)
    if missing:

        def fill(module: torch.nn.Module, key: tuple[int, str], stats) -> None:
            compensate_levels(refined, adapter, module, key, stats, cfg, missing.get(key, []))

        calibrate_into(refined, model, adapter, calib_tokens, cfg, fill, progress=progress)
    refined.build_seconds = time.perf_counter() - start
    count = sum(len(v) for v in missing.values())
    log.info("refined supernet: %d levels compensated anew in %.1f s", count, refined.build_seconds)
    return refined, count
