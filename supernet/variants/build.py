"""Build the supernet: every module's unit ranking and per-level compensation, from one calibration pass.

For each decoder layer (streamed, :mod:`supernet.variants.statistics`) and each module (attention, MLP):

1. score the units with the configured criterion (:mod:`supernet.variants.criteria`) and rank them once;
2. for every level l of the module's grid keep the best ``l * step`` units, so variants are nested
   (a higher level keeps a superset of a lower level's units);
3. compute the compensation (:mod:`supernet.variants.compensation`: nothing, a bias, or refit columns) at the
   module's coarse levels (``ModuleGrid.anchors``); a level between two of them takes the compensation
   of the anchor above, and the columns it keeps fewer pass their mean contribution to the bias
   (``Variant.source_units``): exactly FLAP's bias for ``bias``, the refit of the next coarse width
   with FLAP's bias for the last few channels for ``refit``.

The result is cached compactly (:mod:`supernet.variants.cache`) and a later run with the same model, tokens and
config loads it without calibrating. ``Supernet.apply`` switches a live model to an allocation in place
(Týr-the-Pruner's supernet, https://arxiv.org/abs/2503.09657, without its dense zero-filled copies).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError
from supernet.io.files import default_root
from supernet.io.identity import WeightFiles, model_config, model_digest, weight_files_identity
from supernet.io.streaming import LayerStream, check_stream, should_stream
from supernet.kinds import ModuleKey
from supernet.space.grid import LevelGrid
from supernet.variants import criteria
from supernet.variants.cache import entry_bytes, entry_key, load_entry, save_entry
from supernet.variants.compensation import get_compensation
from supernet.variants.expert_criteria import RoutingStats, channel_scores, expert_scores
from supernet.variants.statistics import calibrate
from supernet.variants.switch import Switcher, Variant, kept_units

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from transformers import PreTrainedModel

    from supernet.io.adapters.base import DecoderAdapter
    from supernet.variants.config import SupernetConfig

log = logging.getLogger(__name__)


@dataclass
class Supernet:
    """Rankings and per-level compensation of every module; turns levels into installable variants."""

    grid: LevelGrid
    criterion: str
    compensation: str
    rankings: dict[ModuleKey, torch.Tensor] = field(default_factory=dict)  # [units], best first
    fluctuation: dict[ModuleKey, torch.Tensor] = field(default_factory=dict)  # FLAP scores [units]
    biases: dict[tuple[int, str, int], torch.Tensor] = field(default_factory=dict)  # (layer, kind, level) -> [hidden]
    weights: dict[tuple[int, str, int], torch.Tensor] = field(default_factory=dict)  # -> [hidden, kept cols]
    means: dict[ModuleKey, torch.Tensor] = field(default_factory=dict)  # mean input of the output projection [in]
    from_cache: bool = False  # True when loaded from the cache without calibrating
    cache_bytes: int = 0
    build_seconds: float = 0.0
    _variants: dict[tuple[int, str, int], Variant | None] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.index = {(m.layer, m.kind): i for i, m in enumerate(self.grid.modules)}

    def variant(self, layer: int, kind: str, level: int) -> Variant | None:
        """The module at ``level``; None when it keeps every unit with no compensation (the dense module).

        The same object is returned on every call, so ``Switcher.apply`` sees unchanged modules."""
        key = (layer, kind, level)
        if key not in self._variants:
            module = self.grid.modules[self.index[layer, kind]]
            count = module.units(level)
            compensated = self.compensation != "none" and (layer, kind) in self.means  # experts never are
            anchor = module.anchor_above(level) if compensated else level
            bias, weight = self.biases.get((layer, kind, anchor)), self.weights.get((layer, kind, anchor))
            units = kept_units(self.rankings[layer, kind], count)
            if anchor == level:
                dense = count == module.total and bias is None and weight is None
                self._variants[key] = None if dense else Variant(units, bias, weight)
            else:
                source = kept_units(self.rankings[layer, kind], module.units(anchor))
                self._variants[key] = Variant(units, bias, weight, source, self.means[layer, kind])
        return self._variants[key]

    def variants(self, levels: Sequence[int]) -> dict[ModuleKey, Variant | None]:
        assert self.grid.in_bounds(levels), f"levels {list(levels)} are outside the grid"
        return {
            (m.layer, m.kind): self.variant(m.layer, m.kind, lv)
            for m, lv in zip(self.grid.modules, levels, strict=True)
        }

    def apply(self, switcher: Switcher, levels: Sequence[int]) -> int:
        """Install an allocation (levels in grid order) in place; returns how many modules changed."""
        return switcher.apply(self.variants(levels))

    # ---- cache form --------------------------------------------------------------------------
    def to_tensors(self) -> dict[str, dict[str, torch.Tensor]]:
        out: dict[str, dict[str, torch.Tensor]] = {}
        for layer, kind in self.rankings:
            out[f"layer{layer}.{kind}"] = {
                "ranking": self.rankings[layer, kind].to(torch.int32),
                "fluctuation": self.fluctuation[layer, kind].double(),  # float64: a cached supernet allocates
                # (flap_global, supernet/space/flap.py) exactly as a fresh one
            }
            if (layer, kind) in self.means:
                out[f"layer{layer}.{kind}"]["mean"] = self.means[layer, kind]
        for (layer, kind, level), bias in self.biases.items():
            out[f"layer{layer}.{kind}"][f"bias.{level}"] = bias
        for (layer, kind, level), weight in self.weights.items():
            out[f"layer{layer}.{kind}"][f"weight.{level}"] = weight
        return out

    def load_tensors(self, modules: dict[str, dict[str, torch.Tensor]]) -> None:
        for stem, tensors in modules.items():
            layer, kind = int(stem.split(".")[0].removeprefix("layer")), stem.split(".")[1]
            self.rankings[layer, kind] = tensors["ranking"].long()
            self.fluctuation[layer, kind] = tensors["fluctuation"].double()
            if "mean" in tensors:
                self.means[layer, kind] = tensors["mean"]
            for name, tensor in tensors.items():
                if name.startswith(("bias.", "weight.")):
                    target = self.biases if name.startswith("bias.") else self.weights
                    target[layer, kind, int(name.split(".")[1])] = tensor


def _fill_module(
    net: Supernet, adapter: DecoderAdapter, module: torch.nn.Module, key: ModuleKey, stats, cfg: SupernetConfig
) -> None:
    """Rank one module's units and compute every level's compensation."""
    layer, kind = key
    if isinstance(stats, RoutingStats) and kind == "mlp" and adapter.channel_units:  # experts rank their channels
        scores = channel_scores(stats, module.experts.down_proj).cpu()  # [E, I]
        net.rankings[key] = scores.argsort(dim=1, descending=True, stable=True)  # [E, I] per expert, best first
        net.fluctuation[key] = scores.sort(dim=1, descending=True).values.mean(dim=0)  # [I]: the u-th best's
        return
    if isinstance(stats, RoutingStats):  # whole experts: ranked by the expert criterion, not compensated
        scores = expert_scores(cfg.expert_criterion, stats).cpu()
        net.rankings[key] = criteria.ranking(scores, 1)
        net.fluctuation[key] = scores  # what flap_global standardises and allocates by
        return
    solve = getattr(torch, cfg.solve_dtype)
    scores = criteria.get_criterion(cfg.criterion)(
        adapter, module, kind, stats, damping=cfg.damping, rounds=cfg.obs_rounds, dtype=solve
    )
    net.rankings[key] = criteria.ranking(scores, adapter.unit_step(kind))
    net.fluctuation[key] = criteria.flap(adapter, module, kind, stats)
    net.means[key] = stats.mean.float().cpu()  # FLAP's bias (supernet/space/flap.py) and the fine levels' bias
    compensate_levels(net, adapter, module, key, stats, cfg, net.grid.modules[net.index[key]].anchors())


def compensate_levels(
    net: Supernet,
    adapter: DecoderAdapter,
    module: torch.nn.Module,
    key: ModuleKey,
    stats,
    cfg: SupernetConfig,
    levels: Sequence[int],
) -> None:
    """Compute the compensation of ``levels`` of one ranked module (bias or refit columns; none stores nothing).

    The solves run on the module's device in ``supernet.solve_dtype``; what is kept goes to the host."""
    if cfg.compensation == "none" or isinstance(stats, RoutingStats):  # experts are not compensated
        return
    layer, kind = key
    net.means[key] = stats.mean.float().cpu()
    compensate = get_compensation(cfg.compensation)
    solve = getattr(torch, cfg.solve_dtype)
    weight = criteria.output_weight(adapter, module, kind)  # [out, in] float64
    grid_module = net.grid.modules[net.index[key]]
    for level in levels:
        units = kept_units(net.rankings[key], grid_module.units(level))
        columns = adapter.output_columns(units, kind)
        bias, refit = compensate(weight, stats, columns, damping=cfg.damping, dtype=solve)
        if bias is not None:
            net.biases[layer, kind, level] = bias.float().cpu()
        if refit is not None:
            net.weights[layer, kind, level] = refit.to(device="cpu", dtype=getattr(torch, cfg.store_dtype))


class LayerSwitcher:
    """Installs variants in a streamed model: a :class:`Switcher` made anew for each layer, once that layer's
    weights were read (a switcher keeps the dense tensors it found when made: the meta ones, before)."""

    def __init__(self, model: PreTrainedModel, adapter: DecoderAdapter) -> None:
        self.model, self.adapter = model, adapter
        self.layer: int | None = None
        self.switcher: Switcher | None = None

    def set(self, layer_idx: int, kind: str, variant: Variant | None) -> None:
        if self.layer != layer_idx:
            self.switcher, self.layer = Switcher(self.model, self.adapter), layer_idx
        self.switcher.set(layer_idx, kind, variant)


def calibrate_into(
    net: Supernet,
    model: PreTrainedModel,
    adapter: DecoderAdapter,
    calib_tokens: torch.Tensor,
    cfg: SupernetConfig,
    fill: Callable[[torch.nn.Module, ModuleKey, object], None],
    *,
    progress: bool = True,
    stream: LayerStream | None = None,
) -> None:
    """One streaming calibration pass (:func:`supernet.variants.statistics.calibrate`) with ``cfg``'s settings:
    ``fill(dense module, (layer, kind), stats)`` for every module, layer after layer; with
    ``propagate=expected`` the next layer sees ``net``'s target variants. The model must be dense; with
    ``stream``, it is ``stream.model`` (a skeleton whose layers are read one at a time)."""
    switcher = Switcher(model, adapter)
    installer = switcher if stream is None else LayerSwitcher(model, adapter)

    def on_layer(i: int, stats: dict) -> dict[str, Variant | None]:
        for kind in adapter.grid_kinds:  # a mixture's expert count is scored from its MLP's routing statistics
            own = kind if kind in adapter.module_kinds else "mlp"
            fill(switcher.dense_modules[i, own], (i, kind), stats[own])
        return {kind: net.variant(i, kind, net.grid.target[net.index[i, kind]]) for kind in adapter.grid_kinds}

    calibrate(
        model,
        adapter,
        calib_tokens,
        on_layer=on_layer,
        switcher=installer,
        propagate=cfg.propagate,
        gram=cfg.needs_gram,
        gram_dtype=cfg.gram_dtype,
        batch_size=cfg.calib_batch_size,
        offload=cfg.calib_offload,
        progress=progress,
        stream=stream,
    )
    net._variants.clear()  # the target variants were built mid-calibration; rebuild lazily


def cache_config(cfg: SupernetConfig, grid: LevelGrid) -> dict:
    """What the cached tensors depend on besides model and tokens (batch size only changes summation order,
    offloading where the hidden states wait between layers, streaming where the weights come from)."""
    fields = {k: v for k, v in asdict(cfg).items() if k not in ("calib_batch_size", "calib_offload", "stream")}
    modules = [[m.layer, m.kind, m.step, m.lo, m.hi, m.stride, m.centre] for m in grid.modules]
    return {"supernet": fields, "grid": modules, "joint": grid.joint}


def streamed_from(model: PreTrainedModel, adapter: DecoderAdapter, cfg: SupernetConfig,
                  weights: WeightFiles | None) -> LayerStream | None:  # fmt: skip
    """A :class:`LayerStream` over the files ``model`` was loaded from, when ``supernet.stream`` says so: ``true``,
    or ``auto`` when the model's bytes exceed :data:`supernet.io.streaming.STREAM_SHARE` of the memory free on its
    device (:func:`supernet.io.streaming.should_stream`). Needs the files, unchanged since the load (``weights``),
    and a dense model: ``true`` without them is a UsageError, ``auto`` then builds on ``model``."""
    setting = check_stream(cfg.stream)
    if setting is False:
        return None
    why = None
    if weights is None:
        why = "the model was not loaded from safetensors files"
    elif adapter.moe:
        why = "a mixture of experts is built on the loaded model (transformers fuses its experts' tensors)"
    elif weight_files_identity(weights.directory, weights.dtype) != weights.identity:
        why = f"the weight files in {weights.directory} changed after the model was loaded"
    if why is not None:
        if setting is True:
            raise UsageError(f"supernet.stream=true reads the model's layers from its files, but {why}: use "
                             "supernet.stream=auto or false")  # fmt: skip
        return None
    device = next(model.parameters()).device
    if not should_stream(setting, sum(p.numel() * p.element_size() for p in model.parameters()), device):
        return None
    return LayerStream(weights.directory, dtype=str(weights.dtype).removeprefix("torch."), device=str(device),
                       attn_unit=adapter.attn_unit)  # fmt: skip


def build_supernet(
    model: PreTrainedModel,
    adapter: DecoderAdapter,
    calib_tokens: torch.Tensor,
    cfg: SupernetConfig,
    grid: LevelGrid,
    *,
    cache_dir: Path | str | None = None,
    use_cache: bool = True,
    weights: WeightFiles | None = None,
    progress: bool = True,
    stream: LayerStream | None = None,
) -> Supernet:
    """Load the supernet from the cache, or calibrate and build it (and cache it).

    The model must be dense (no variant installed). Args:
        calib_tokens: [sequences, seq_len] calibration token ids (train split).
        cache_dir: cache root; None = :func:`supernet.io.files.default_root`.
        use_cache: False builds without reading or writing the cache.
        weights: the files the model was loaded from (:func:`supernet.io.identity.weight_files`, taken before the
            load): their identity stands for the weights in the cache key; None hashes every tensor.
        stream: build layer by layer from the files (:class:`supernet.io.streaming.LayerStream`), ``model`` being
            ``stream.model`` (its skeleton, no weight in memory) or the loaded model; None: as
            ``supernet.stream`` decides (:func:`streamed_from`). The result is the same bits either way.
    """
    start = time.perf_counter()
    net = Supernet(grid, cfg.criterion, cfg.compensation)
    stream = stream or streamed_from(model, adapter, cfg, weights)
    config = {**cache_config(cfg, grid), "model": model_config(model)}
    directory = None
    if use_cache:
        root = Path(cache_dir).expanduser() if cache_dir is not None else default_root()
        hash_model = stream.model_hash if stream is not None and stream.model is model else None
        key = entry_key(model_digest(model, weights, root, hash_model=hash_model), calib_tokens, config)
        directory = root / key
        modules = load_entry(directory, key)
        if modules is not None:
            net.load_tensors(modules)
            net.from_cache, net.cache_bytes = True, entry_bytes(directory)
            net.build_seconds = time.perf_counter() - start
            log.info("supernet loaded from cache %s (%d bytes)", directory, net.cache_bytes)
            return net

    def fill(module: torch.nn.Module, key: ModuleKey, stats) -> None:
        _fill_module(net, adapter, module, key, stats, cfg)

    target = model if stream is None else stream.model
    calibrate_into(net, target, adapter, calib_tokens, cfg, fill, progress=progress, stream=stream)
    if directory is not None:
        net.cache_bytes = save_entry(directory, key, config, net.to_tensors())
    net.build_seconds = time.perf_counter() - start
    log.info("supernet built in %.1f s (%s + %s%s)", net.build_seconds, cfg.criterion, cfg.compensation,
             ", streamed layer by layer" if stream is not None else "")  # fmt: skip
    return net
