"""What a run reads before it prunes: the model, the calibration and fitness windows, the held-out windows.

Shared by the main run (search/app/run.py) and the proxy report (search/app/proxy_report.py), which
read them the same way: the model directory (``model.path``, or the built-in reference model, built
on first use), and token windows packed from ``data``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from search.fitness import windows_for
from supernet.errors import UsageError
from supernet.io.data import load_texts
from supernet.io.identity import WeightFiles, weight_files
from supernet.io.loading import check_device, check_positions
from supernet.io.placement import load_placed, visible_devices
from supernet.io.windows import pack_tokens

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from search.app.config import RunConfig
    from supernet.io.adapters.base import DecoderAdapter
    from supernet.io.data import DataConfig
    from supernet.io.loading import ModelConfig
    from supernet.io.placement import PlacementConfig

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    """The loaded model, its tokenizer and adapter, where it came from and the name reports give it."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    adapter: DecoderAdapter
    directory: Path
    name: str
    weights: WeightFiles | None  # the weight files as they were when loaded (the supernet cache's key)


def resolve_model_path(model: ModelConfig, *, progress: bool) -> tuple[Path, str]:
    """The model directory and the name reported in metrics.json."""
    if model.path is not None:
        return Path(model.path).expanduser(), str(model.path)
    from supernet.io.reference.build import reference_model_dir

    return reference_model_dir(model.reference, progress=progress), f"strata-reference-{model.reference}"


def load_inputs(
    model: ModelConfig,
    data: DataConfig,
    *,
    device: str,
    attn_unit: str,
    seed: int,
    progress: bool,
    expert_unit: str = "expert",
    placement: PlacementConfig | None = None,
) -> Inputs:
    """Check the device, seed torch, load the model and check ``data``'s windows fit its positions.

    ``placement.device_map=auto`` spreads the model over every visible device of ``device``'s type
    (supernet/io/placement.py); otherwise it is loaded onto ``device``."""
    check_device(device, available=True)
    torch.manual_seed(seed)
    directory, name = resolve_model_path(model, progress=progress)
    weights = weight_files(directory, getattr(torch, model.dtype))  # before the load reads them
    spread = placement is not None and placement.device_map == "auto"
    devices = visible_devices(device) if spread else [device]
    if spread and len(devices) == 1:
        log.info("placement.device_map=auto: one %s device visible, the model stays whole on it", device)
    loaded, tokenizer, adapter = load_placed(directory, devices, dtype=model.dtype, attn_unit=attn_unit,
                                             max_memory=placement.max_memory if spread else None,
                                             expert_unit=expert_unit)  # fmt: skip
    check_positions(loaded.config, data)
    return Inputs(loaded, tokenizer, adapter, directory, name, weights)


def eval_tokens(data: DataConfig, tokenizer) -> torch.Tensor:
    """Held-out windows [eval_sequences, eval_seq_len]: the builtin eval split, data.eval_path, or else data.path."""
    if data.source == "builtin" and data.eval_path is None:
        texts = load_texts("builtin", split="eval")
    else:
        source = "text" if data.source == "builtin" else data.source
        texts = load_texts(source, path=data.eval_path or data.path, text_field=data.text_field, split="eval")
    return pack_tokens(tokenizer, texts, seq_len=data.eval_seq_len, num_sequences=data.eval_sequences, seed=0,
                       name="data.eval_seq_len")  # fmt: skip


def fitness_tokens(cfg: RunConfig) -> int | None:
    """Tokens the search scores candidates on apart from calibration (``search.fitness=held_apart``), or None
    when candidates are scored on the calibration windows (``search.fitness=calibration``, or no search)."""
    held_apart = cfg.search.sampler != "none" and cfg.search.fitness == "held_apart"
    return max(cfg.search.stage_tokens) if held_apart else None


def train_permutation(data: DataConfig, tokenizer, *, seed: int, count: int) -> torch.Tensor:
    """The first ``count`` windows [<= count, data.seq_len] of the train text's one seeded permutation, which
    calibration, fitness and the selection heals take consecutive slices of (so they never share a window)."""
    texts = load_texts(data.source, path=data.path, text_field=data.text_field, split="train")
    return pack_tokens(tokenizer, texts, seq_len=data.seq_len, num_sequences=count, seed=seed)


def train_windows(
    data: DataConfig, tokenizer, *, seed: int, fitness_tokens: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The calibration windows the supernet is fitted on, and the windows a search scores candidates on.

    Both are drawn from the train split (builtin) or ``data.path`` by one seeded permutation of its
    windows: calibration takes the first ``data.calib_sequences`` (the same windows whatever follows),
    fitness the next ``ceil(fitness_tokens / data.seq_len)``, so the two never share a window
    (``search.fitness=held_apart``). ``fitness_tokens=None`` (``search.fitness=calibration``, or no
    search): the fitness windows are the calibration windows. Returns ([calib, seq_len], [fitness, seq_len]).
    """
    extra = 0 if fitness_tokens is None else windows_for(fitness_tokens, data.seq_len)
    tokens = train_permutation(data, tokenizer, seed=seed, count=data.calib_sequences + extra)
    calib, fitness = tokens[: data.calib_sequences], tokens[data.calib_sequences :]
    if fitness_tokens is None:
        return calib, calib
    if len(fitness) == 0:
        raise UsageError(
            f"the calibration text gives {len(tokens)} windows of {data.seq_len} tokens, none left to score "
            "candidates on apart from calibration: add text, lower data.calib_sequences, or search.fitness=calibration"
        )
    if len(fitness) < extra:
        log.warning("fitness: %d held-apart windows, not the %d search.stage_tokens asks", len(fitness), extra)
    return calib, fitness


def selection_heal_windows(cfg: RunConfig, tokenizer) -> torch.Tensor | None:
    """The train windows candidates are healed on in training-aware selection (``search.heal_tokens > 0``), else
    None: the ``ceil(heal_tokens / data.seq_len)`` windows after the calibration and fitness windows in
    :func:`train_windows`' permutation, so they share no window with either."""
    tokens = cfg.search.heal_tokens
    if tokens == 0:
        return None
    data, fitness = cfg.data, fitness_tokens(cfg)
    before = data.calib_sequences + (0 if fitness is None else windows_for(fitness, data.seq_len))
    wanted = windows_for(tokens, data.seq_len)
    windows = train_permutation(data, tokenizer, seed=cfg.seed, count=before + wanted)
    if len(windows) < before + wanted:
        raise UsageError(
            f"the training text gives {len(windows)} windows of data.seq_len={data.seq_len}: calibration and fitness "
            f"take {before}, search.heal_tokens={tokens} needs {wanted} more: add text or lower search.heal_tokens"
        )
    return windows[before:]
