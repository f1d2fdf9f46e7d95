"""Calibration statistics of the output projections' inputs, streamed layer by layer (and, for the
experts of a mixture, of its routing: :mod:`supernet.variants.expert_criteria`).

For every module the input X of its output projection (o_proj / down_proj; X: [tokens, in]) is
reduced, per input channel j, to

    mean_j = (1/n) sum_t X_tj        var_j = (1/n) sum_t X_tj^2 - mean_j^2        sq_norm_j = sum_t X_tj^2

(float64), and optionally to the Gram matrix H = X^T X (float32 or float64), which is what every
criterion and compensation needs (FLAP: mean and variance; Wanda-sp: ||X_j||_2 = sqrt(sq_norm_j);
OBS and refit: H). A batch is reduced in chunks of ``STATS_CHUNK_ELEMENTS`` values, so the float64 copy
it needs is bounded (32 MiB) whatever the batch: a batch of 8 x 2048 tokens into a 7B MLP's 11008
channels would otherwise make a 1.4 GB float64 temporary. Every statistic is accumulated on the device
the model runs on (nothing is copied to the host per batch): on a GPU, H of an 8B MLP (14336^2) is one
matrix product per batch.

Layer-wise streaming as SparseGPT (Frantar & Alistarh 2023, https://arxiv.org/abs/2301.00774): the
embeddings run once, then each decoder layer runs on the calibration batches with forward hooks on its
output projections; memory holds one layer's statistics plus the batches' hidden states. The next layer
gets either the dense outputs (``propagate="dense"``) or the outputs of the layer with the variants
returned by ``on_layer`` installed (``propagate="expected"``, Týr-the-Pruner's expectation error
accumulation, https://arxiv.org/abs/2503.09657; the target level is passed explicitly by the caller).
After each layer the allocator's free pages go back to the OS (:func:`release_freed_memory`), so resident
memory stays at the model's bytes plus one layer's statistics instead of growing layer by layer. With a
``stream`` (``supernet.stream``, :class:`supernet.io.streaming.LayerStream`) the model is a skeleton without weights
and each module's weights are on the device only while it runs: one layer's bytes instead of the model's.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from tqdm.auto import tqdm

from supernet.errors import check_choice
from supernet.variants.expert_criteria import RoutingAccumulator

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from supernet.io.adapters.base import DecoderAdapter
    from supernet.variants.expert_criteria import RoutingStats

log = logging.getLogger(__name__)

PROPAGATE = ("dense", "expected")
GRAM_DTYPES = {"float32": torch.float32, "float64": torch.float64}
STATS_CHUNK_ELEMENTS = 1 << 22  # values of X reduced at a time: a float64 chunk is 32 MiB


def damp(m: torch.Tensor, damping: float, *, copy: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT's conditioning of a second-moment matrix M (H = X^T X, or the inputs' covariance), the one rule
    OBS and the refits share: an input with no energy, M_jj <= 0 (never active on the calibration tokens; a
    covariance's cancellation can leave a tiny negative), gets M_jj = 1, then M += damping * mean(diag M) * I
    (``supernet.damping``, SparseGPT's percdamp). Returns (a damped copy of M, or M itself damped in place with
    ``copy=False``, and the dead inputs). m: [n, n] -> ([n, n], [n] bool)"""
    m = m.clone() if copy else m
    dead = torch.diag(m) <= 0  # [n]
    m.diagonal()[dead] = 1.0
    m.diagonal().add_(damping * torch.diag(m).mean())
    return m, dead


class Installer(Protocol):
    """What calibration needs of a switcher (:class:`supernet.variants.switch.Switcher`): install one module's
    variant (None: the dense module) in the live model."""

    def set(self, layer_idx: int, kind: str, variant: Any) -> None: ...


@dataclass
class ChannelStats:
    """Statistics of one output projection's input channels over n calibration tokens."""

    count: int  # n, tokens seen
    mean: torch.Tensor  # [in] float64
    var: torch.Tensor  # [in] float64, population variance over tokens
    sq_norm: torch.Tensor  # [in] float64, sum_t X_tj^2 = ||X_j||_2^2
    gram: torch.Tensor | None = None  # [in, in] H = X^T X (sum over tokens), or None


class StatsAccumulator:
    """Streams X batches into per-channel sums (float64) and optionally H = X^T X."""

    def __init__(
        self,
        channels: int,
        *,
        gram: bool,
        gram_dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        chunk_elements: int = STATS_CHUNK_ELEMENTS,
    ) -> None:
        assert chunk_elements >= 1, f"chunk_elements must be >= 1, got {chunk_elements}"
        self.chunk_elements = chunk_elements
        self.count = 0
        self.sum = torch.zeros(channels, dtype=torch.float64, device=device)
        self.sq_sum = torch.zeros(channels, dtype=torch.float64, device=device)
        self.gram = torch.zeros(channels, channels, dtype=gram_dtype, device=device) if gram else None

    def update(self, x: torch.Tensor) -> None:
        """x: [..., in] inputs of the output projection.

        The float64 sums go in chunks of rows (a bounded float64 copy); H takes the whole batch in one
        product, since each chunk's product would read and write all of H."""
        x = x.detach().reshape(-1, x.shape[-1]).to(self.sum.device)  # [tokens, in]
        self.count += x.shape[0]
        rows = max(1, self.chunk_elements // x.shape[-1])
        for start in range(0, x.shape[0], rows):
            x64 = x[start : start + rows].to(torch.float64)  # [rows, in]
            self.sum += x64.sum(dim=0)
            self.sq_sum += x64.pow(2).sum(dim=0)
        if self.gram is not None:
            xg = x.to(self.gram.dtype)
            self.gram += xg.T @ xg  # [in, tokens] @ [tokens, in] -> [in, in]

    def finalize(self) -> ChannelStats:
        assert self.count > 0, "no calibration token reached this projection"
        mean = self.sum / self.count
        var = (self.sq_sum / self.count - mean.pow(2)).clamp_min(0.0)
        return ChannelStats(self.count, mean, var, self.sq_sum.clone(), self.gram)


@functools.cache
def _libc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release_freed_memory() -> None:
    """Give every free page of the C heap back to the OS (glibc ``malloc_trim(0)``); elsewhere nothing.

    A layer's temporaries (the criteria's float64 copies of a weight, tens of MB) come from glibc's heap
    once its dynamic mmap threshold has grown past them; the small tensors each layer keeps (rankings,
    biases) then pin the heap above the freed space, and resident memory grew by about a layer's
    temporaries per layer (measured: +1 GB over the 18 layers of a 0.5B Llama). ``malloc_trim(0)``
    releases free pages wherever they lie."""
    trim = _libc_trim()
    if trim is not None:
        trim(0)


def hidden_store(device: torch.device, offload: bool | None) -> torch.device:
    """Where the calibration batches' hidden states wait between layers: the host when offloading (by
    default when the model is on an accelerator), else the model's device."""
    offload = device.type != "cpu" if offload is None else offload
    return torch.device("cpu") if offload else device


def _run(adapter: DecoderAdapter, layer: torch.nn.Module, batches: list[torch.Tensor], context: dict,
         device: torch.device) -> list[torch.Tensor]:  # fmt: skip
    """The layer on every batch, each moved to ``device`` to run and its output back where the batch was."""
    return [adapter.run_layer(layer, h.to(device), context).to(h.device) for h in batches]


def _accumulator(adapter: DecoderAdapter, layer: torch.nn.Module, kind: str, *, gram: bool, gram_dtype: str,
                 device: torch.device) -> StatsAccumulator | RoutingAccumulator:  # fmt: skip
    """What a module's units are scored from: its output projection's input channels, or (the experts of a
    mixture) the router's choices (:mod:`supernet.variants.expert_criteria`)."""
    if kind == "mlp" and adapter.moe:
        channels = adapter.expert_width if adapter.channel_units else 0
        return RoutingAccumulator(adapter.num_experts, channels=channels, device=device)
    width = adapter.output_linear(layer, kind).in_features
    return StatsAccumulator(width, gram=gram, gram_dtype=GRAM_DTYPES[gram_dtype], device=device)


def _hooked_pass(
    adapter: DecoderAdapter,
    layer: torch.nn.Module,
    batches: list[torch.Tensor],
    context: dict,
    accumulators: dict[str, StatsAccumulator | RoutingAccumulator],
    device: torch.device,
) -> list[torch.Tensor]:
    """Run the layer on every batch with input hooks on its output projections (a MoE layer: on its
    experts); returns its outputs."""
    handles = []
    try:
        for kind, acc in accumulators.items():
            if isinstance(acc, RoutingAccumulator):
                handles.append(acc.attach(adapter.mlp(layer).experts))
                continue
            linear = adapter.output_linear(layer, kind)
            handles.append(linear.register_forward_pre_hook(lambda _m, args, acc=acc: acc.update(args[0])))
        return _run(adapter, layer, batches, context, device)
    finally:
        for handle in handles:
            handle.remove()


class Residency(Protocol):
    """Where a streamed model's weights come from (:class:`supernet.io.streaming.LayerStream`): the device the
    layers run on, and a context in which one module's weights are there (read from the files, freed after)."""

    device: torch.device

    def resident(self, module: torch.nn.Module) -> AbstractContextManager[None]: ...


def _layer_step(
    i: int,
    adapter: DecoderAdapter,
    layer: torch.nn.Module,
    hidden: list[torch.Tensor],
    context: dict,
    *,
    on_layer: Callable[[int, dict[str, ChannelStats | RoutingStats]], dict[str, Any]],
    switcher: Installer | None,
    propagate: str,
    gram: bool,
    gram_dtype: str,
    device: torch.device,
) -> list[torch.Tensor]:
    """Layer i: statistics on the dense layer, ``on_layer``, then the inputs of layer i + 1."""
    accs = {k: _accumulator(adapter, layer, k, gram=gram, gram_dtype=gram_dtype, device=device)
            for k in adapter.module_kinds}  # fmt: skip
    # 2) statistics on the dense layer (its outputs are the dense propagation)
    outputs = _hooked_pass(adapter, layer, hidden, context, accs, device)
    stats = {k: acc.finalize() for k, acc in accs.items()}
    del accs
    targets = on_layer(i, stats)
    del stats
    # 3) expected propagation: the outputs of the layer at its target variants
    if propagate == "expected":
        try:
            for kind in targets:
                switcher.set(i, kind, targets[kind])
            outputs = _run(adapter, layer, hidden, context, device)
        finally:
            for kind in targets:
                switcher.set(i, kind, None)
    return outputs


@torch.no_grad()
def calibrate(
    model: PreTrainedModel,
    adapter: DecoderAdapter,
    tokens: torch.Tensor,
    *,
    on_layer: Callable[[int, dict[str, ChannelStats | RoutingStats]], dict[str, Any]],
    switcher: Installer | None = None,
    propagate: str = "dense",
    gram: bool = False,
    gram_dtype: str = "float32",
    batch_size: int = 8,
    offload: bool | None = None,
    progress: bool = True,
    stream: Residency | None = None,
) -> None:
    """Stream the calibration tokens through the model one decoder layer at a time.

    For layer i: collect ``ChannelStats`` of its attention and MLP output projections on the dense
    layer, hand them to ``on_layer(i, stats)`` (which ranks units and builds variants), then compute the
    inputs of layer i+1: the dense outputs, or with ``propagate="expected"`` the outputs of layer i with
    the variants ``on_layer`` returned installed through ``switcher`` (restored to dense afterwards).

    Args:
        tokens: [sequences, seq_len] calibration token ids.
        offload: keep the batches' hidden states on the host between layers, each moved to the model's
            device for its layer call (on a GPU the device then holds the model, one layer's statistics and
            one batch: 2 x 1 GiB of hidden states less at 128 x 2048 tokens of an 8B model). None: on a GPU.
        stream: the model's weights are read module by module (``model`` is a skeleton on the meta device): the
            embeddings, then each decoder layer, are on ``stream.device`` only while they run.
    """
    check_choice("supernet.propagate", propagate, PROPAGATE)
    if propagate == "expected" and switcher is None:
        raise ValueError("propagate='expected' needs the switcher that installs the target variants")
    device = next(model.parameters()).device if stream is None else stream.device
    resident = (lambda _module: contextlib.nullcontext()) if stream is None else stream.resident
    store = hidden_store(device, offload)
    # 1) embeddings once: [batch, T, hidden] per batch, kept on ``store``
    with resident(model.get_input_embeddings()):
        hidden = [adapter.embed(model, tokens[s : s + batch_size].to(device)).to(store)
                  for s in range(0, len(tokens), batch_size)]  # fmt: skip
    context = adapter.layer_context(model, hidden[0].to(device))
    layers = adapter.decoder_layers(model)
    for i in tqdm(range(len(layers)), desc="calibration", disable=not progress, leave=False):
        with resident(layers[i]):
            hidden = _layer_step(i, adapter, layers[i], hidden, context, on_layer=on_layer, switcher=switcher,
                                 propagate=propagate, gram=gram, gram_dtype=gram_dtype, device=device)  # fmt: skip
        release_freed_memory()
    log.info("calibrated %d layers on %d tokens (%s propagation)", len(layers), tokens.numel(), propagate)
