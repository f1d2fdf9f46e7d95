"""``trace_correlation``: TraceNAS's gradient trace correlation between a candidate and the dense model.

For every active sub-block u (the attention or the MLP of a layer that keeps at least one unit):

    rho_u = Pearson( g_cand[u], g_dense[u][kept coordinates of u] )
    score = - sum_u rho_u            (TraceNAS maximises sum_u rho_u; negated so lower is better)

g = dL/dW of the language-modelling loss L (token-mean next-token cross entropy over all batches),
over the weights of every projection of u, flattened and concatenated. The dense gradient is computed
once (``prepare``) and indexed to the candidate's kept rows / columns (the Switcher's variants and the
adapter's ``block_index``). Removed sub-blocks have no gradient and are skipped, so the sum favours
deeper candidates (TraceNAS bounds the parameter count for that reason).

``projection_rank`` r > 0 replaces each gradient G [out, in] by a fixed random projection of it: on
the side no unit slices, so the dense projection can be cached and indexed:

    row-sliced projections (q, k, v, gate, up):   G @ P^T,  P: [r, in]   -> [out, r]
    column-sliced projections (o, down):          P @ G,    P: [r, out]  -> [r, in]

with P ~ N(0, 1/r), seeded and the same for every candidate. G @ P^T is the gradient of a LoRA
adapter's B at B = 0 with A = P (TraceNAS uses r = 64), i.e. sum_tokens grad_out^T (x P^T); here it is
computed from the full gradient of one weight at a time, which is equal and needs no hooks.

Gradients are taken with ``torch.autograd.grad`` on the live weights, whose ``requires_grad`` is
switched on only inside and restored in ``finally``: no ``.grad`` and no hooks are left behind.

TraceNAS (2026), https://arxiv.org/abs/2602.02891 (gradient trace correlation for joint depth/width
search of pruned LLMs).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from proxies.base import Proxy, model_device
from supernet.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from torch import nn
    from transformers import PreTrainedModel

    from supernet.io.adapters import Projection
    from supernet.variants.switch import Switcher

log = logging.getLogger(__name__)

Key = tuple[int, str, str]  # (layer, kind, projection name)


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    """Pearson correlation of two same-size tensors (flattened, float64); 0 if either is constant."""
    x = x.reshape(-1).double()
    y = y.reshape(-1).double()
    assert x.numel() == y.numel(), f"pearson of {x.numel()} and {y.numel()} entries"
    xc, yc = x - x.mean(), y - y.mean()
    denom = xc.norm() * yc.norm()
    return 0.0 if denom.item() == 0.0 else (xc @ yc / denom).item()


def lm_loss_sum(model: PreTrainedModel, batch: torch.Tensor) -> torch.Tensor:
    """Sum over tokens of next-token cross entropy. batch: [b, T] -> scalar."""
    logits = model(input_ids=batch).logits[:, :-1]  # [b, T - 1, vocab]
    logits = logits.float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1), reduction="sum")


class TraceCorrelationProxy(Proxy):
    """Minus the sum over active sub-blocks of the gradient correlation with the dense model."""

    name = "trace_correlation"

    def __init__(self, switcher: Switcher, *, projection_rank: int = 0, seed: int = 0) -> None:
        super().__init__(switcher)
        if projection_rank < 0:
            raise UsageError(f"proxy.projection_rank={projection_rank} must be >= 0 (0 = full gradients)")
        self.rank = projection_rank
        self.seed = seed
        self.dense: dict[Key, torch.Tensor] = {}  # dense gradient (or its projection) per projection
        self.projections: dict[Key, torch.Tensor] = {}  # P per projection when rank > 0
        self.last_correlations: dict[tuple[int, str], float] = {}  # rho_u of the last scored candidate

    # ---- which weights, which coordinates -------------------------------------------------------
    def _plan(self, kind: str) -> tuple[Projection, ...]:
        return self.switcher.adapter.plan(kind)

    def _active(self) -> list[tuple[int, str]]:
        """Modules that keep at least one unit (dense ones included)."""
        return [key for key, v in self.switcher.current.items() if v is None or v.units.numel() > 0]

    def _weights(self, modules: list[tuple[int, str]]) -> dict[Key, nn.Parameter]:
        """The live weight of every projection of the given modules."""
        adapter, layers = self.switcher.adapter, self.switcher.layers
        weights = {}
        for layer, kind in modules:
            module = adapter.module(layers[layer], kind)
            for proj in self._plan(kind):
                weights[layer, kind, proj.name] = getattr(module, proj.name).weight
        return weights

    def _kept(self, layer: int, kind: str, proj: Projection) -> torch.Tensor | None:
        """Kept rows ("out") or columns ("in") of a projection; None when the module is dense."""
        variant = self.switcher.current[layer, kind]
        if variant is None:
            return None
        return self.switcher.adapter.block_index(variant.units, proj.block, kind=kind)

    # ---- gradients ------------------------------------------------------------------------------
    def _gradients(self, model: PreTrainedModel, batches: Sequence[torch.Tensor], weights: dict) -> dict:
        """dL/dW for every weight, L = token-mean LM loss over all batches; nothing left on the model."""
        device = model_device(model)
        params = list(weights.values())
        flags = [p.requires_grad for p in params]
        tokens = sum(b.shape[0] * (b.shape[1] - 1) for b in batches)
        grads = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        try:
            for p in params:
                p.requires_grad_(True)
            with torch.enable_grad():
                for batch in batches:
                    loss = lm_loss_sum(model, batch.to(device)) / tokens
                    for total, g in zip(grads, torch.autograd.grad(loss, params), strict=True):
                        total += g.float()
        finally:
            for p, flag in zip(params, flags, strict=True):
                p.requires_grad_(flag)
        return dict(zip(weights, grads, strict=True))

    def _projection(self, key: Key, side: str, grad: torch.Tensor) -> torch.Tensor:
        """The fixed P of one weight: [r, in] for row-sliced, [r, out] for column-sliced projections.

        Its width is the unsliced side, the same for the dense model and every candidate.
        """
        if key not in self.projections:
            layer, kind, name = key
            position = [p.name for p in self._plan(kind)].index(name)
            kinds = self.switcher.adapter.module_kinds  # attention, MLP (and Qwen2-MoE's shared expert)
            stream = (layer * len(kinds) + kinds.index(kind)) * 8 + position  # one seeded stream per weight
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + stream)
            width = grad.shape[1] if side == "out" else grad.shape[0]
            self.projections[key] = torch.randn(self.rank, width, generator=generator) / self.rank**0.5
        return self.projections[key]

    def _trace(self, key: Key, side: str, grad: torch.Tensor) -> torch.Tensor:
        """The trace of one weight: its gradient, or its projection on the side no unit slices."""
        if self.rank == 0:
            return grad
        p = self._projection(key, side, grad).to(grad.device)
        if side == "out":
            return grad @ p.T  # [rows, in] @ [in, r] -> [rows, r]
        return p @ grad  # [r, out] @ [out, cols] -> [r, cols]

    def prepare(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> None:
        modules = list(self.switcher.current)
        assert all(v is None for v in self.switcher.current.values()), "prepare needs the dense model installed"
        grads = self._gradients(model, batches, self._weights(modules))
        self.dense = {}
        for (layer, kind, name), grad in grads.items():
            side = next(p.side for p in self._plan(kind) if p.name == name)
            self.dense[layer, kind, name] = self._trace((layer, kind, name), side, grad)
        log.info("trace_correlation: cached dense traces of %d weights (rank %s), %.1f MiB",
                 len(self.dense), self.rank or "full", self.cache_bytes() / 2**20)  # fmt: skip

    def correlations(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> dict[tuple[int, str], float]:
        """rho_u per active sub-block of the live candidate."""
        assert self.dense, "trace_correlation: call prepare with the dense model first"
        modules = self._active()
        grads = self._gradients(model, batches, self._weights(modules))
        out = {}
        for layer, kind in modules:
            cand, dense = [], []
            for proj in self._plan(kind):
                key = (layer, kind, proj.name)
                kept = self._kept(layer, kind, proj)
                trace = self._trace(key, proj.side, grads[key])
                reference = self.dense[key]
                if kept is not None:
                    # row-sliced: keep rows of [out, in or r]; column-sliced: keep columns of [out or r, in]
                    reference = reference.index_select(0 if proj.side == "out" else 1, kept.to(reference.device))
                cand.append(trace.reshape(-1))
                dense.append(reference.reshape(-1))
            out[layer, kind] = pearson(torch.cat(cand), torch.cat(dense))
        self.last_correlations = out
        return out

    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        return -sum(self.correlations(model, batches).values())

    def cache_bytes(self) -> int:
        tensors = [*self.dense.values(), *self.projections.values()]
        return sum(t.numel() * t.element_size() for t in tensors)
