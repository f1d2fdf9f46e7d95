"""Search stage of the main run: build the evaluator and the study, run it, return the winner.

The study's user attributes carry the resolved config, the reproducibility manifest (git revision,
versions, hashes) and the budget; each trial carries its repaired levels, kept parameters and every
proxy value computed for it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from search.app.artifacts import TrialArtifacts
from search.app.config import SEED_LIMIT
from search.app.evaluator import make_evaluator
from search.app.manifest import plain_config
from search.driver import Search, enqueue_warm_starts, make_sampler
from search.evolution import best_complete, trial_levels
from search.fitness import Evaluator
from search.study import finished_count, iteration_study, make_storage, open_study
from supernet.errors import UsageError
from supernet.kinds import ATTN, MLP
from supernet.space.budget import base_flops, unit_flops
from supernet.space.grids import refine_grid
from supernet.space.repair import repair
from supernet.variants.refine import refine_supernet

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import optuna
    import torch
    from transformers import PreTrainedModel

    from search.app.config import RunConfig
    from supernet.io.adapters.base import DecoderAdapter
    from supernet.space.grid import LevelGrid
    from supernet.variants.build import Supernet
    from supernet.variants.switch import Switcher

log = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """The winner and where it lives: coarse-to-fine iterations end on a refined grid and supernet."""

    levels: list[int]  # on ``grid``, exactly on budget
    grid: LevelGrid
    supernet: Supernet
    info: dict  # metrics.json's "search" entry
    evaluator: Evaluator
    pareto: dict | None = None  # multi-objective mode: the front and the chosen point (pareto.json)


def run_search(
    cfg: RunConfig,
    *,
    model: PreTrainedModel,
    adapter: DecoderAdapter,
    switcher: Switcher,
    supernet: Supernet,
    grid: LevelGrid,
    calib: torch.Tensor,
    warm_starts: dict[str, list[int]],
    run_dir: Path,
    fitness: torch.Tensor | None = None,
    heal_windows: torch.Tensor | None = None,
    manifest: dict | None = None,
) -> SearchResult:
    """Search levels on the grid, refined ``search.iterations - 1`` times (Týr's coarse-to-fine).

    ``calib`` are the windows the supernet is fitted on (a refinement fits its new widths on them),
    ``fitness`` the windows candidates are scored on (None: ``calib``), ``heal_windows`` those last-stage
    candidates are healed on first (``search.heal_tokens``; None = off). ``manifest``: the run's
    (search/app/manifest.py), set as every study's user attributes.

    Iteration r runs its own study (``search.study.iteration_study``) in the one storage; iteration
    r > 0 re-centres the grid on the best allocation so far with half the step, rebuilds only the
    missing compensation, and starts from that best allocation, so the best fitness never rises.
    """
    if not any(m.lo < m.hi for m in grid.modules):
        raise UsageError("the search space is empty (every module has one level): raise supernet.radius")
    start = time.perf_counter()
    scfg = cfg.search
    fitness = calib if fitness is None else fitness
    evaluator = make_evaluator(cfg, model=model, switcher=switcher, supernet=supernet, fitness=fitness,
                               heal_windows=heal_windows)  # fmt: skip
    try:
        storage = make_storage(scfg.storage, run_dir)
        second = second_objective(scfg.multi_objective, adapter, grid, cfg.budget.seq_len)
        directions = ["minimize"] if second is None else ["minimize", "minimize"]
        net, starts, iterations, best, pareto = supernet, warm_starts, [], None, None
        for iteration in range(scfg.iterations):
            begun = time.perf_counter()
            rebuilt = 0
            if iteration:
                grid, net, rebuilt = refine_iteration(cfg, grid, best, net, model=model, adapter=adapter,
                                                      switcher=switcher, calib=calib, evaluator=evaluator)  # fmt: skip
                starts = {"previous_best": list(grid.target)}
            study = open_iteration_study(cfg, grid, iteration, storage=storage, directions=directions,
                                         manifest=manifest, starts=starts)  # fmt: skip
            best, pareto = search_iteration(cfg, study, grid, evaluator, iteration, run_dir=run_dir, second=second)
            iterations.append(iteration_entry(iteration, study, grid, evaluator, best, rebuilt=rebuilt, begun=begun))
        info = search_info(cfg, evaluator, iterations, pareto, start=start)
        return SearchResult(best, grid, net, info, evaluator, pareto)
    except BaseException:  # a Ray pool must not outlive a failed search
        evaluator.close()
        raise


def step_tables(grid: LevelGrid) -> dict[str, dict[str, int]]:
    """The grid's per-kind tables an iteration records: units per level ("steps") and levels per coarse level
    ("strides"), for attention and the MLP."""
    return {
        "steps": {k: grid.step(k) for k in (ATTN, MLP)},
        "strides": {k: grid.stride(k) for k in (ATTN, MLP)},
    }


def refine_iteration(
    cfg: RunConfig,
    grid: LevelGrid,
    best: list[int],
    net: Supernet,
    *,
    model: PreTrainedModel,
    adapter: DecoderAdapter,
    switcher: Switcher,
    calib: torch.Tensor,
    evaluator: Evaluator,
) -> tuple[LevelGrid, Supernet, int]:
    """A later iteration's start: the grid re-centred on ``best`` with half the coarse level, the supernet with
    the missing compensation fitted on the dense model, and the evaluator on it. Returns the grid, the supernet
    and how many levels were compensated."""
    grid = refine_grid(grid, best, radius=cfg.supernet.radius)
    switcher.apply(dict.fromkeys(switcher.current))  # calibration needs the dense model
    net, rebuilt = refine_supernet(net, grid, model=model, adapter=adapter, calib_tokens=calib,
                                   cfg=cfg.supernet, progress=cfg.progress)  # fmt: skip
    evaluator.use(net)
    return grid, net, rebuilt


def open_iteration_study(
    cfg: RunConfig,
    grid: LevelGrid,
    iteration: int,
    *,
    storage: optuna.storages.BaseStorage,
    directions: list[str],
    manifest: dict | None,
    starts: dict[str, list[int]],
) -> optuna.Study:
    """Iteration ``iteration``'s study: its sampler, its user attributes (the config, the run's manifest, the
    budget, the iteration and the grid's step tables) and its warm starts (the configured ones first, then the
    best so far)."""
    scfg = cfg.search
    sampler = make_sampler(scfg, grid, (cfg.seed + iteration) % SEED_LIMIT)  # stays in [0, 2**32) for Optuna
    stale_after = None if scfg.storage is None else scfg.stale_after
    study = open_study(name=iteration_study(scfg.study_name, iteration), storage=storage, sampler=sampler,
                       directions=directions, stale_after=stale_after)  # fmt: skip
    study.set_user_attr("config", plain_config(cfg))
    for key, value in (manifest or {}).items():  # the run's manifest (search/app/manifest.py)
        study.set_user_attr(key, value)
    budget = {"kind": cfg.budget.kind, "keep": cfg.budget.keep, "cost": grid.budget,
              "params": grid.params(grid.target)}  # fmt: skip
    study.set_user_attr("budget", budget)
    study.set_user_attr("iteration", iteration)
    for key, table in step_tables(grid).items():
        study.set_user_attr(key, table)
    names = scfg.warm_start if iteration == 0 else ["previous_best"]
    enqueue_warm_starts(study, grid, {name: starts[name] for name in names if name in starts})
    return study


def search_iteration(
    cfg: RunConfig,
    study: optuna.Study,
    grid: LevelGrid,
    evaluator: Evaluator,
    iteration: int,
    *,
    run_dir: Path,
    second: Callable[[Sequence[int]], float] | None,
) -> tuple[list[int], dict | None]:
    """Run iteration ``iteration``'s search on ``study``; returns its best allocation on the budget, and in
    multi-objective mode (``second``) the Pareto front with the point chosen from it (else None)."""
    scfg = cfg.search
    desc = "search" if scfg.iterations == 1 else f"search {iteration + 1}/{scfg.iterations}"
    hooks = [TrialArtifacts(run_dir, grid)]
    Search(scfg, study, grid, evaluator, progress=cfg.progress, on_complete=hooks, second_objective=second,
           desc=desc, replay=scfg.storage is None).run()  # fmt: skip
    pareto = None
    if second is None:
        best = best_complete(study, grid)
    else:
        best, pareto = pareto_choice(study, grid, evaluator)
    assert best is not None and grid.on_budget(best), f"no complete trial on budget: {best}"
    return best, pareto


def iteration_entry(
    iteration: int,
    study: optuna.Study,
    grid: LevelGrid,
    evaluator: Evaluator,
    best: list[int],
    *,
    rebuilt: int,
    begun: float,
) -> dict:
    """metrics.json's record of one iteration: its study, trials, best fitness, grid and compensated levels, and
    the seconds since ``begun``."""
    return {
        "iteration": iteration,
        "study": study.study_name,
        "trials": finished_count(study),
        "best_fitness": evaluator.score(best, evaluator.stages - 1),
        **step_tables(grid),
        "joint": grid.joint,
        "compensated_levels": rebuilt,
        "seconds": round(time.perf_counter() - begun, 2),
    }


def search_info(
    cfg: RunConfig, evaluator: Evaluator, iterations: list[dict], pareto: dict | None, *, start: float
) -> dict:
    """metrics.json's "search" entry: the sampler and proxy, totals over ``iterations`` (and the seconds since
    ``start``), the last iteration's best fitness, the evaluator's counters, and the Pareto front's size."""
    info = {
        "sampler": cfg.search.sampler,
        "proxy": cfg.proxy.name,
        "trials": sum(it["trials"] for it in iterations),
        "seconds": round(time.perf_counter() - start, 2),
        "best_fitness": iterations[-1]["best_fitness"],
        "evaluations": evaluator.evaluations,
        "forward_tokens": evaluator.forward_tokens,
        "stage_tokens": evaluator.stage_tokens,
        "iterations": iterations,
    }
    if cfg.search.heal_tokens:  # training-aware selection: last-stage candidates healed before their score
        info["heal_tokens"] = cfg.search.heal_tokens
        info["healed_candidates"] = evaluator.healed
    if pareto is not None:
        info["multi_objective"] = cfg.search.multi_objective
        info["pareto_points"] = len(pareto["front"])
    return info


def second_objective(
    name: str | None, adapter: DecoderAdapter, grid: LevelGrid, seq_len: int
) -> Callable[[Sequence[int]], float] | None:
    """Multi-objective mode's second value: the kept fraction of the units' parameters or FLOPs."""
    if name is None:
        return None
    kinds = (ATTN, MLP)
    if name == "params":
        counted = dataclasses.replace(grid, unit_cost=None, base_cost=None)
    else:
        counted = dataclasses.replace(grid, unit_cost={k: unit_flops(adapter, k, seq_len) for k in kinds},
                                      base_cost={k: base_flops(adapter, k, seq_len) for k in kinds})  # fmt: skip
    dense = counted.dense_cost()
    return lambda levels: counted.cost(levels) / dense


def pareto_choice(study: optuna.Study, grid: LevelGrid, evaluator: Evaluator) -> tuple[list[int], dict]:
    """Multi-objective mode: the Pareto front, and the allocation to materialise from it.

    The chosen point is the front's best fitness among those within the budget (cost <= the target's),
    repaired up onto the budget exactly (``supernet.space.repair.repair`` only adds levels) and scored again.
    A front with no point within budget gives its cheapest point, repaired down.
    """
    target = grid.budget
    front = []
    for t in sorted(study.best_trials, key=lambda t: (t.values[1], t.values[0], t.number)):
        levels = trial_levels(t, grid)
        front.append({"trial": t.number, "levels": levels, "fitness": t.values[0], "kept": t.values[1],
                      "params": grid.params(levels), "feasible": grid.cost(levels) <= target})  # fmt: skip
    feasible = [p for p in front if p["feasible"]]
    pick = min(feasible, key=lambda p: (p["fitness"], p["trial"])) if feasible else front[0]
    levels = repair(grid, pick["levels"])
    chosen = {"from_trial": pick["trial"], "levels": levels, "params": grid.params(levels),
              "fitness": evaluator.score(levels, evaluator.stages - 1)}  # fmt: skip
    return levels, {"front": front, "chosen": chosen}
