"""Evaluate a sequence of models on the same lm-evaluation-harness tasks with the same settings.

The tasks are resolved and loaded once, before the first model (strata's shipped tasks, ``include_path``, then
lm-eval's registry), offline; each model is wrapped with its own tokenizer and evaluated task by task, with a
progress bar over models x tasks. The models come one at a time (an iterator), so only one is alive at once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from search.evaluate.harness import evaluate, harness_model, load_tasks, offline, require_lm_eval, task_manager
from search.evaluate.results import build_eval
from supernet.errors import UsageError

if TYPE_CHECKING:
    from search.evaluate.config import EvalConfig

log = logging.getLogger(__name__)


def include_paths(cfg: EvalConfig) -> list[Path]:
    """strata's shipped tasks (generated at first use), then ``cfg.include_path`` when given (it must exist)."""
    from search.evaluate.shipped import shipped_tasks_dir

    paths = [shipped_tasks_dir()]
    if cfg.include_path is not None:
        path = Path(cfg.include_path).expanduser()
        if not path.is_dir():
            raise UsageError(f"include path {path} (--include-path, eval.include_path) is no folder: give a folder of "
                             "lm-eval task YAMLs")  # fmt: skip
        paths.append(path)
    return paths


@contextmanager
def quiet_bars(quiet: bool) -> Iterator[None]:
    """With ``quiet``, datasets' bars (building a task's split) off inside, and back on after."""
    import datasets

    if not quiet or not datasets.is_progress_bar_enabled():
        yield
        return
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.enable_progress_bars()


def settings(cfg: EvalConfig) -> dict:
    return {"tasks": list(cfg.tasks), "num_fewshot": cfg.num_fewshot, "limit": cfg.limit, "batch_size": cfg.batch_size}


def evaluate_models(models: Iterable, names: list[str], cfg: EvalConfig, *, progress: bool = True) -> dict:
    """eval.json's content (:func:`search.evaluate.results.build_eval`) of ``models``, an iterable of
    (name, model, tokenizer) whose names are ``names`` (for the progress bar), on ``cfg.tasks``."""
    version = require_lm_eval()
    # lm-eval warns on every model passed as an instance, which is the point here; its errors still show
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    per_model: dict[str, dict] = {}
    with offline(), quiet_bars(not progress):
        manager = task_manager(list(cfg.tasks), include_paths(cfg))  # every task loaded before the first model:
        tasks = load_tasks(manager, list(cfg.tasks))  # a task without its data fails before any work
        bar = tqdm(total=len(names) * len(tasks), desc="eval", disable=not progress)
        for name, model, tokenizer in models:
            lm = harness_model(model, tokenizer, batch_size=cfg.batch_size, progress=progress)
            for task, loaded in tasks.items():
                bar.set_description(f"eval {name}: {task}")
                raw = evaluate(lm, loaded, manager=manager, num_fewshot=cfg.num_fewshot, limit=cfg.limit)
                per_model.setdefault(name, {})[task] = raw
                bar.update()
            del lm, model, tokenizer
        bar.close()
    return build_eval(per_model, version=version, settings=settings(cfg))
