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
from search.app.evaluator import make_evaluator
from search.app.manifest import plain_config
from search.driver import Search, enqueue_warm_starts, make_sampler
from search.evolution import best_complete, trial_levels
from search.fitness import Evaluator
from search.study import finished_count, iteration_study, make_storage, open_study
from supernet.budget import base_flops, unit_flops
from supernet.errors import UsageError
from supernet.grids import refine_grid
from supernet.levels import repair
from supernet.refine import refine_supernet

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import optuna
    import torch
    from transformers import PreTrainedModel

    from search.app.config import RunConfig
    from supernet.adapters import DecoderAdapter
    from supernet.build import Supernet
    from supernet.levels import LevelGrid
    from supernet.switch import Switcher

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
    manifest: dict | None = None,
) -> SearchResult:
    """Search levels on the grid, refined ``search.iterations - 1`` times (Týr's coarse-to-fine).

    ``calib`` are the windows the supernet is fitted on (a refinement fits its new widths on them),
    ``fitness`` the windows candidates are scored on (None: ``calib``). ``manifest``: the run's
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
    evaluator = make_evaluator(cfg, model=model, switcher=switcher, supernet=supernet, fitness=fitness)
    try:
        storage = make_storage(scfg.storage, run_dir)
        second = second_objective(scfg.multi_objective, adapter, grid, cfg.budget.seq_len)
        directions = ["minimize"] if second is None else ["minimize", "minimize"]
        net, starts, iterations, best, pareto = supernet, warm_starts, [], None, None
        for iteration in range(scfg.iterations):
            begun = time.perf_counter()
            rebuilt = 0
            if iteration:
                grid = refine_grid(grid, best, radius=cfg.supernet.radius)
                switcher.apply(dict.fromkeys(switcher.current))  # calibration needs the dense model
                net, rebuilt = refine_supernet(net, grid, model=model, adapter=adapter, calib_tokens=calib,
                                               cfg=cfg.supernet, progress=cfg.progress)  # fmt: skip
                evaluator.use(net)
                starts = {"previous_best": list(grid.target)}
            sampler = make_sampler(scfg, grid, cfg.seed + iteration)
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
            study.set_user_attr("steps", {k: grid.step(k) for k in ("attn", "mlp")})
            study.set_user_attr("strides", {k: grid.stride(k) for k in ("attn", "mlp")})
            names = scfg.warm_start if iteration == 0 else ["previous_best"]
            enqueue_warm_starts(study, grid, {name: starts[name] for name in names if name in starts})
            desc = "search" if scfg.iterations == 1 else f"search {iteration + 1}/{scfg.iterations}"
            hooks = [TrialArtifacts(run_dir, grid)]
            Search(scfg, study, grid, evaluator, progress=cfg.progress, on_complete=hooks, second_objective=second,
                   desc=desc, replay=scfg.storage is None).run()  # fmt: skip
            if second is None:
                best = best_complete(study, grid)
            else:
                best, pareto = pareto_choice(study, grid, evaluator)
            assert best is not None and grid.on_budget(best), f"no complete trial on budget: {best}"
            iterations.append({
                "iteration": iteration,
                "study": study.study_name,
                "trials": finished_count(study),
                "best_fitness": evaluator.score(best, evaluator.stages - 1),
                "steps": {k: grid.step(k) for k in ("attn", "mlp")},
                "strides": {k: grid.stride(k) for k in ("attn", "mlp")},
                "joint": grid.joint,
                "compensated_levels": rebuilt,
                "seconds": round(time.perf_counter() - begun, 2),
            })  # fmt: skip
        info = {
            "sampler": scfg.sampler,
            "proxy": cfg.proxy.name,
            "trials": sum(it["trials"] for it in iterations),
            "seconds": round(time.perf_counter() - start, 2),
            "best_fitness": iterations[-1]["best_fitness"],
            "evaluations": evaluator.evaluations,
            "forward_tokens": evaluator.forward_tokens,
            "stage_tokens": evaluator.stage_tokens,
            "iterations": iterations,
        }
        if pareto is not None:
            info["multi_objective"] = scfg.multi_objective
            info["pareto_points"] = len(pareto["front"])
        return SearchResult(best, grid, net, info, evaluator, pareto)
    except BaseException:  # a Ray pool must not outlive a failed search
        evaluator.close()
        raise


def second_objective(
    name: str | None, adapter: DecoderAdapter, grid: LevelGrid, seq_len: int
) -> Callable[[Sequence[int]], float] | None:
    """Multi-objective mode's second value: the kept fraction of the units' parameters or FLOPs."""
    if name is None:
        return None
    kinds = ("attn", "mlp")
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
    repaired up onto the budget exactly (``supernet.levels.repair`` only adds levels) and scored again.
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
