"""A thin wrapper over lm-evaluation-harness's Python API (0.4.x), offline, for models strata holds.

Every model is passed as an instance with the tokenizer it really has
(``lm_eval.models.huggingface.HFLM(pretrained=model, tokenizer=tokenizer)``): lm-eval's own loading goes
through ``AutoTokenizer``, which transformers 5 may rebuild with another pre-tokenizer than the model's
``tokenizer.json`` (REFERENCES.md; measured 1.66 instead of 1.48 bits per byte on a Qwen2 model). Tasks come
from lm-eval's registry or from folders of YAMLs (strata's shipped tasks first); their data is read from the
local Hugging Face cache or local files, never downloaded (:func:`offline`), and every task is loaded once,
before any model runs, so a missing dataset ends with one error naming the task.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supernet.errors import UsageError
from supernet.io.loading import first_line

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

INSTALL = 'pip install -e ".[eval]"'  # the extra that installs lm-eval and accelerate
OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")


def require_lm_eval() -> str:
    """lm-eval's version; UsageError naming the install command when it (or accelerate, which its HF model
    class needs) is missing."""
    import importlib

    for name in ("lm_eval", "accelerate"):
        try:
            importlib.import_module(name)
        except ImportError:
            raise UsageError(f"evaluation needs lm-evaluation-harness and accelerate ({name} is missing): "
                             f"{INSTALL}") from None  # fmt: skip
    import lm_eval

    return lm_eval.__version__


@contextmanager
def offline() -> Iterator[None]:
    """Nothing is downloaded inside: ``HF_DATASETS_OFFLINE`` and ``HF_HUB_OFFLINE`` set, and the flags
    huggingface_hub and datasets read from them at import (when already imported) set too; all restored after."""
    import huggingface_hub.constants as hub

    saved_env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    modules = [hub]
    try:
        import datasets.config

        modules.append(datasets.config)
    except ImportError:  # lm-eval needs datasets; its absence surfaces in require_lm_eval's caller
        pass
    saved = [(m, {k: getattr(m, k) for k in OFFLINE_ENV if hasattr(m, k)}) for m in modules]
    os.environ.update(dict.fromkeys(OFFLINE_ENV, "1"))
    for module, flags in saved:
        for key in flags:
            setattr(module, key, True)
    try:
        yield
    finally:
        for key, value in saved_env.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        for module, flags in saved:
            for key, value in flags.items():
                setattr(module, key, value)


def task_manager(names: list[str], include_paths: list[Path]) -> Any:
    """An lm-eval ``TaskManager`` that knows every task of ``names``: over ``include_paths`` alone when they
    hold them all (indexing lm-eval's registry takes seconds), else with the registry too. An unknown name
    is a UsageError."""
    from lm_eval.tasks import TaskManager

    paths = [str(p) for p in include_paths]
    manager = TaskManager(include_path=paths, include_defaults=False)
    if all(name in manager.all_tasks for name in names):
        return manager
    manager = TaskManager(include_path=paths, include_defaults=True)
    unknown = [name for name in names if name not in manager.all_tasks]
    if unknown:
        raise UsageError(
            f"unknown task {unknown[0]}: it is neither in lm-eval's registry nor in {', '.join(paths)}; give a "
            "registered name (python -m lm_eval ls tasks) or --include-path DIR holding its YAML"
        )
    return manager


def load_tasks(manager: Any, names: list[str]) -> dict[str, list[Any]]:
    """Per name, what to pass to ``simple_evaluate`` (the task, the group with its subtasks, or a tag's tasks),
    each loaded once with its data; a task whose data is not present locally is a UsageError naming it."""
    out = {}
    for name in names:
        try:
            loaded = manager.load([name])
        except (OSError, ValueError) as exc:  # datasets: FileNotFoundError, offline ConnectionError (an OSError)
            raise UsageError(
                f"task {name}: its data is not present locally ({first_line(exc)}); nothing is downloaded: put the "
                "dataset in the local Hugging Face cache (HF_DATASETS_CACHE) or point the task's YAML at local files "
                "(dataset_path: json, dataset_kwargs.data_files) and pass --include-path"
            ) from None
        group = loaded["groups"].get(name)
        task = loaded["tasks"].get(name)
        out[name] = [group] if group is not None else [task] if task is not None else list(loaded["tasks"].values())
    return out


def harness_model(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, batch_size: int, progress: bool = True
) -> Any:
    """lm-eval's HF model class over ``model`` as it is, with ``tokenizer`` (never reloaded by AutoTokenizer);
    without ``progress`` its per-request bars are off (lm-eval's evaluator never asks)."""
    from lm_eval.models.huggingface import HFLM

    class StrataHFLM(HFLM):
        """HFLM whose request bars follow strata's progress switch."""

        def loglikelihood(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood(requests, disable_tqdm=disable_tqdm or not progress)

        def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, override_bs: int | None = None):
            # loglikelihood_rolling asks for this bar whatever it was given
            return super()._loglikelihood_tokens(requests, disable_tqdm=disable_tqdm or not progress,
                                                 override_bs=override_bs)  # fmt: skip

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
            return super().loglikelihood_rolling(requests, disable_tqdm=disable_tqdm or not progress)

        def generate_until(self, requests, disable_tqdm: bool = False):
            return super().generate_until(requests, disable_tqdm=disable_tqdm or not progress)

    return StrataHFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def evaluate(lm: Any, tasks: list[Any], *, manager: Any, num_fewshot: int | None, limit: float | None) -> dict:
    """``lm_eval.simple_evaluate`` of ``lm`` on loaded ``tasks``; its results dict (``results``, ``configs``...)."""
    import lm_eval

    return lm_eval.simple_evaluate(model=lm, tasks=tasks, num_fewshot=num_fewshot, limit=limit, task_manager=manager,
                                   log_samples=False)  # fmt: skip
