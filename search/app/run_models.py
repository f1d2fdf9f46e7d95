"""The models a run compares, rebuilt one at a time from its config and its directory.

A run directory holds only the searched model (``model/``) and, once healed, ``healed/``. The baselines are
rebuilt as the run built them (search/app/run.py): the dense model and the calibration windows loaded by the
run's config (``.hydra/config.yaml``), the supernet of the same key (its cache makes the second build a read),
``uniform`` (``allocate("uniform", ...)`` on the first grid) and ``flap_global`` (FLAP's own method,
``flap_baseline(net, switcher).install(switcher)``) switched onto the dense model in place. Each model comes
with the tokenizer it really has (:func:`supernet.io.loading.faithful_tokenizer`), and only one model is alive
besides the caller's at a time: the dense one (switched in place) is released before ``model/`` is loaded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from search.app.rundir import run_config
from supernet.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from search.app.config import RunConfig

    Model = tuple[str, PreTrainedModel, PreTrainedTokenizerBase]

SAVED = {"searched": "model", "healed": "healed"}  # model name -> its folder in the run directory


def config_of(run_dir: Path) -> RunConfig:
    """The run's typed config from ``.hydra/config.yaml`` (what ``strata`` recorded); UsageError without one."""
    from omegaconf import OmegaConf

    from search.app.config import RunConfig

    recorded = run_config(run_dir)
    if not recorded:
        raise UsageError(f"{run_dir} holds no .hydra/config.yaml: give the directory of a strata run")
    schema = OmegaConf.structured(RunConfig)
    return OmegaConf.to_object(OmegaConf.merge(schema, {k: v for k, v in recorded.items() if k in schema}))


def saved(cfg: RunConfig, run_dir: Path) -> list[tuple[str, Path]]:
    """(name, folder) of the saved models present: ``searched`` (``model/``; ``pruned`` for a run without search)
    and ``healed``."""
    out = []
    for name, folder in SAVED.items():
        if (Path(run_dir) / folder / "config.json").is_file():
            out.append(("pruned" if name == "searched" and cfg.search.sampler == "none" else name, run_dir / folder))
    return out


def model_names(cfg: RunConfig, run_dir: Path) -> list[str]:
    """Every model :func:`run_models` yields, in order."""
    return ["dense", "uniform", "flap_global", *(name for name, _ in saved(cfg, Path(run_dir)))]


def baselines(cfg: RunConfig, *, standalone: bool = False) -> Iterator[Model]:
    """dense, then uniform and flap_global switched onto it in place, as the run measured them; ``standalone``:
    uniform and flap_global as materialised copies of their own (``StrataForCausalLM`` at their shapes, trainable
    apart from the live model) instead of the live model itself."""
    from search.app.inputs import fitness_tokens, load_inputs, train_windows
    from supernet.space.allocators import allocate
    from supernet.space.budget import budget_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.flap_baseline import flap_baseline
    from supernet.variants.switch import Switcher

    inputs = load_inputs(cfg.model, cfg.data, device=cfg.device, attn_unit=cfg.supernet.attn_unit, seed=cfg.seed,
                         expert_unit=cfg.supernet.expert_unit, progress=cfg.progress,
                         placement=cfg.placement)  # fmt: skip
    model, tokenizer, adapter = inputs.model, inputs.tokenizer, inputs.adapter
    yield "dense", model, tokenizer
    grid = budget_grid(model, adapter, cfg.budget, cfg.supernet)
    calib, _ = train_windows(cfg.data, tokenizer, seed=cfg.seed, fitness_tokens=fitness_tokens(cfg))
    net = build_supernet(model, adapter, calib, cfg.supernet, grid, weights=inputs.weights, progress=cfg.progress)
    switcher = Switcher(model, adapter)
    flap = flap_baseline(net, switcher)

    def current() -> PreTrainedModel:
        if not standalone:
            return model
        from supernet.io.export.save import materialize

        return materialize(model, switcher.shapes(), own=True)

    net.apply(switcher, allocate("uniform", net, grid, cfg.budget.keep))
    yield "uniform", current(), tokenizer
    flap.install(switcher)
    yield "flap_global", current(), tokenizer


def run_models(cfg: RunConfig, run_dir: Path) -> Iterator[Model]:
    """(name, model, tokenizer) of every model of :func:`model_names`, one at a time (a model is released once
    the next is asked for)."""
    from supernet.io.export.load import load_pruned

    yield from baselines(cfg)
    for name, folder in saved(cfg, Path(run_dir)):
        model, tokenizer = load_pruned(folder, dtype=cfg.model.dtype, device=cfg.device)
        yield name, model, tokenizer
        del model, tokenizer
