"""The run's evaluator: in process (``search.workers=1``), or a pool of Ray actors that build the same one.

The application knows the model directory, the windows and every option; the search layer takes the
evaluator as it is built here (search/fitness.py, search/workers.py, search/actor.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.actor import EvaluatorSpec, tensors_to_bytes
from search.app.config import selection_heal_config
from search.app.inputs import resolve_model_path
from search.fitness import Evaluator, stage_windows
from search.heal.selection import SelectionHeal
from search.workers import EvaluatorPool

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from search.app.config import RunConfig
    from supernet.variants.build import Supernet
    from supernet.variants.switch import Switcher


def uses_ray(cfg: RunConfig) -> bool:
    """Ray scores candidates when there is more than one worker or a Ray address is given."""
    return cfg.search.workers > 1 or cfg.ray.address is not None


def make_evaluator(
    cfg: RunConfig,
    *,
    model: PreTrainedModel,
    switcher: Switcher,
    supernet: Supernet,
    fitness: torch.Tensor,
    heal_windows: torch.Tensor | None = None,
) -> Evaluator | EvaluatorPool:
    """The in-process :class:`Evaluator` (``search.workers=1``), or a pool of Ray actors building the same one.

    ``fitness``: [windows, seq_len] the token windows candidates are scored on (search/app/run.py);
    ``heal_windows``: those last-stage candidates are healed on (``search.heal_tokens``; None = off)."""
    scfg = cfg.search
    windows = stage_windows(fitness, scfg.stage_tokens)
    heal = selection_heal_config(cfg)
    assert (heal is None) == (heal_windows is None), "search.heal_tokens > 0 needs its windows, and only then"
    if not uses_ray(cfg):
        heal = None if heal is None else SelectionHeal(heal, heal_windows, seed=cfg.seed)
        return Evaluator(model, switcher, supernet, cfg.proxy, windows, batch_size=cfg.data.batch_size,
                         prescreen=scfg.prescreen, heal=heal)  # fmt: skip
    model_dir, _ = resolve_model_path(cfg.model, progress=cfg.progress)
    cuda = cfg.device.startswith("cuda")
    spec = EvaluatorSpec(
        model_dir=str(model_dir.resolve()), dtype=cfg.model.dtype, device="cuda" if cuda else cfg.device,
        proxy=cfg.proxy, stage_tokens=list(scfg.stage_tokens), batch_size=cfg.data.batch_size,
        prescreen=scfg.prescreen, attn_unit=cfg.supernet.attn_unit, expert_unit=cfg.supernet.expert_unit,
        calib=tensors_to_bytes({"calib": fitness}), max_memory=cfg.placement.max_memory, seed=cfg.seed,
        heal=heal, heal_windows=None if heal_windows is None else tensors_to_bytes({"windows": heal_windows}),
    )  # fmt: skip
    return EvaluatorPool(
        spec, supernet, workers=scfg.workers, cfg=cfg.ray,
        stage_tokens=[int(w.numel()) for w in windows], proxy_name=cfg.proxy.name, prescreen=scfg.prescreen,
        gpus=1.0 if cuda else 0.0, heals=heal is not None,
    )  # fmt: skip
