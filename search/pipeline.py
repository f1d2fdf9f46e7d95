"""Search stage of the main run: build the evaluator and the study, run it, return the winner.

The study's user attributes carry the resolved config, the git revision and the budget; each trial
carries its repaired levels, kept parameters and every proxy value computed for it.
"""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from search.driver import Search, enqueue_warm_starts, make_sampler
from search.evolution import best_complete
from search.fitness import Evaluator, stage_windows
from search.study import finished_count, make_storage, open_study
from supernet.errors import UsageError

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from search.config import RunConfig
    from supernet.build import Supernet
    from supernet.levels import LevelGrid
    from supernet.switch import Switcher

log = logging.getLogger(__name__)


def git_revision() -> dict:
    """The checkout's commit and whether it has uncommitted changes (None outside a git checkout)."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return {"revision": None, "dirty": None}
    return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def run_search(
    cfg: RunConfig,
    *,
    model: PreTrainedModel,
    switcher: Switcher,
    supernet: Supernet,
    grid: LevelGrid,
    calib: torch.Tensor,
    warm_starts: dict[str, list[int]],
    run_dir: Path,
) -> tuple[list[int], dict, Evaluator]:
    """Search levels on the grid; returns the best levels, metrics.json's ``search`` entry, the evaluator."""
    if not any(m.lo < m.hi for m in grid.modules):
        raise UsageError("the search space is empty (every module has one level): raise supernet.radius")
    start = time.perf_counter()
    scfg = cfg.search
    evaluator = Evaluator(
        model, switcher, supernet, cfg.proxy, stage_windows(calib, scfg.stage_tokens),
        batch_size=cfg.data.batch_size, prescreen=scfg.prescreen,
    )  # fmt: skip
    storage = make_storage(scfg.storage, run_dir)
    sampler = make_sampler(scfg, grid, cfg.seed)
    study = open_study(name=scfg.study_name, storage=storage, sampler=sampler, directions=["minimize"])
    study.set_user_attr("config", _plain(cfg))
    study.set_user_attr("git", git_revision())
    budget = {"kind": cfg.budget.kind, "keep": cfg.budget.keep, "params": grid.params(grid.target)}
    study.set_user_attr("budget", budget)
    enqueue_warm_starts(study, grid, {name: warm_starts[name] for name in scfg.warm_start if name in warm_starts})
    Search(scfg, study, grid, evaluator, progress=cfg.progress).run()
    best = best_complete(study, grid)
    assert best is not None and grid.on_budget(best), f"no complete trial on budget: {best}"
    info = {
        "sampler": scfg.sampler,
        "proxy": cfg.proxy.name,
        "trials": finished_count(study),
        "seconds": round(time.perf_counter() - start, 2),
        "best_fitness": evaluator.score(best, evaluator.stages - 1),
        "evaluations": evaluator.evaluations,
        "forward_tokens": evaluator.forward_tokens,
        "stage_tokens": evaluator.stage_tokens,
        "iterations": [{"iteration": 0, "trials": finished_count(study), "best_fitness": study.best_value}],
    }
    return best, info, evaluator


def _plain(cfg) -> dict:
    """The resolved config as JSON-able dicts."""
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
