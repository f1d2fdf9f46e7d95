"""``kl``: mean over tokens of KL(p_dense || p_cand), the fitness of EvoPress and Týr-the-Pruner.

    KL_t = sum_{v in K_t} p_t(v) * (log p_t(v) - log q_t(v)),
    p_t = softmax(z_dense[t, K_t]),  q_t = softmax(z_cand[t, K_t])
    score = sum_t KL_t / #tokens          (token-weighted over all batches; lower is better, >= 0)

K_t is the teacher's top-k vocabulary entries at token t; both distributions are renormalised over
K_t, as Týr does (with k >= vocab, K_t is the whole vocabulary and this is the exact KL). The teacher
side is computed once per batch and cached as its k log-probabilities log p_t (``cache_dtype``) and,
when k < vocab, k int32 indices: tokens * k * 6 bytes in bfloat16, 8 in float32 (the default, so that
KL(dense || dense) is exactly 0); with k >= vocab no index is stored. Every position is scored, the
last one too (the distribution over the next token is defined everywhere).

Per candidate only the student side is computed: its logits (:mod:`proxies.prefix` reuses the hidden
states of the layers it shares with candidates scored before it), then, in chunks of rows small
enough for the CPU cache, a gather of K_t, a log-softmax and one fused KL reduction.

EvoPress (Sieberling et al., 2024), https://arxiv.org/abs/2410.14649: top-k with k >= 512 is about as
good as full KL; Týr-the-Pruner (Li et al., 2025), https://arxiv.org/abs/2503.09657: k = 8192.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from proxies.base import Proxy, model_device
from proxies.prefix import DEFAULT_MAX_BYTES, PrefixForward
from supernet.errors import UsageError, check_choice
from supernet.io.dtypes import DTYPES

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel

    from supernet.variants.switch import Switcher

log = logging.getLogger(__name__)

CHUNK_ELEMENTS = 1 << 16  # rows per chunk = this / k: [rows, k] float32 temporaries of 256 KiB stay in L2


def topk_kl(teacher_values: torch.Tensor, teacher_index: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Per-token KL(p || q) renormalised over the teacher's top-k (Týr); the reference form of :func:`kl_sum`.

    teacher_values: [tokens, k] teacher logits at ``teacher_index`` [tokens, k] (int32);
    student_logits: [tokens, vocab]. Returns [tokens], float32, clamped at 0 (rounding only).
    """
    log_p = F.log_softmax(teacher_values.float(), dim=-1)  # [tokens, k]
    gathered = student_logits.float().gather(-1, teacher_index.long())  # [tokens, k]
    log_q = F.log_softmax(gathered, dim=-1)  # [tokens, k]
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)


def full_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Per-token KL(p || q) over the whole vocabulary (reference form). logits: [tokens, vocab] -> [tokens]."""
    log_p = F.log_softmax(teacher_logits.float(), dim=-1)
    log_q = F.log_softmax(student_logits.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)


def teacher_log_probs(logits: torch.Tensor, top_k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """log p_t over K_t, the teacher's top-k entries: log_softmax of the top-k logits, and their indices.

    logits: [tokens, vocab]. Returns log_p [tokens, k] float32 and index [tokens, k] int32, or the
    log-softmax over the whole vocabulary in vocabulary order and None when k >= vocab."""
    if top_k >= logits.shape[-1]:
        return _chunked(logits, lambda z: F.log_softmax(z.float(), dim=-1)), None
    values, index = logits.topk(top_k, dim=-1, sorted=False)  # [tokens, k]
    return _chunked(values, lambda z: F.log_softmax(z.float(), dim=-1)), index.to(torch.int32)


def _chunked(x: torch.Tensor, fn) -> torch.Tensor:
    """``fn`` applied to row chunks of x [tokens, k] (rows are independent), concatenated."""
    rows = max(1, CHUNK_ELEMENTS // x.shape[-1])
    return torch.cat([fn(x[s : s + rows]) for s in range(0, x.shape[0], rows)])


def kl_sum(log_p: torch.Tensor, index: torch.Tensor | None, student_logits: torch.Tensor) -> torch.Tensor:
    """sum_t KL_t (module docstring) from the cached teacher side, float64 scalar.

    log_p: [tokens, k] teacher log-probabilities over K_t; index: [tokens, k] int32 vocabulary ids of K_t
    (None: K_t is the whole vocabulary, in order); student_logits: [tokens, vocab]. Rows are processed in
    chunks of ``CHUNK_ELEMENTS / k`` so the [rows, k] temporaries stay in the CPU cache."""
    rows = max(1, CHUNK_ELEMENTS // log_p.shape[-1])
    total = torch.zeros((), dtype=torch.float64, device=log_p.device)
    for s in range(0, log_p.shape[0], rows):
        z = student_logits[s : s + rows]  # [rows, vocab]
        if index is not None:
            z = z.gather(-1, index[s : s + rows].long())  # [rows, k]
        log_q = F.log_softmax(z.float(), dim=-1)  # [rows, k]
        # sum exp(log_p) * (log_p - log_q) over the chunk (kl_div's input is log q, its target log p)
        total += F.kl_div(log_q, log_p[s : s + rows].float(), reduction="sum", log_target=True).double()
    return total


class KLProxy(Proxy):
    """Token-weighted mean KL(dense || candidate) over the teacher's top-k. Lower is better; 0 = dense.

    ``reuse_bytes``: memory for the hidden states of layer prefixes shared between candidates
    (:class:`proxies.prefix.PrefixForward`); 0 runs every candidate from the embeddings."""

    name = "kl"
    standalone = True

    def __init__(
        self,
        switcher: Switcher,
        *,
        top_k: int = 8192,
        cache_dtype: str = "float32",
        reuse_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        super().__init__(switcher)
        if top_k < 1:
            raise UsageError(f"proxy.kl_top_k={top_k} must be >= 1 (a value >= the vocabulary means full KL)")
        check_choice("proxy.kl_cache_dtype", cache_dtype, DTYPES)
        if reuse_bytes < 0:
            raise UsageError(f"kl reuse_bytes={reuse_bytes} must be >= 0 (0 disables prefix reuse)")
        self.top_k = top_k
        self.cache_dtype = getattr(torch, cache_dtype)
        self.forward = PrefixForward(switcher, max_bytes=reuse_bytes)
        self.teacher: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # per batch: log p [tokens, k], index

    @torch.no_grad()
    def prepare(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> None:
        device = model_device(model)
        self.forward.clear()
        self.teacher = []
        for b, batch in enumerate(batches):
            logits = self.forward.logits(model, b, batch.to(device))  # [b, T, vocab]
            log_p, index = teacher_log_probs(logits.reshape(-1, logits.shape[-1]), self.top_k)  # [tokens, k]
            self.teacher.append((log_p.to(self.cache_dtype), index))
        log.info("kl: cached teacher top-%d log-probabilities of %d batches, %.1f MiB",
                 self.teacher[0][0].shape[-1], len(self.teacher), self.cache_bytes() / 2**20)  # fmt: skip

    @torch.no_grad()
    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        assert len(batches) == len(self.teacher), (
            f"kl was prepared on {len(self.teacher)} batches, scored on {len(batches)}: call prepare first"
        )
        device = model_device(model)
        total = torch.zeros((), dtype=torch.float64)
        tokens = 0
        for b, (batch, (log_p, index)) in enumerate(zip(batches, self.teacher, strict=True)):
            logits = self.forward.logits(model, b, batch.to(device))  # [b, T, vocab]
            logits = logits.reshape(-1, logits.shape[-1])  # [tokens, vocab]
            total += kl_sum(log_p, index, logits).cpu()
            tokens += logits.shape[0]
        return max(total.item(), 0.0) / tokens

    @torch.no_grad()
    def score_standalone(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        """The same KL for a model outside the switcher (a healed copy): plain forwards against the cached teacher."""
        assert len(batches) == len(self.teacher), f"kl was prepared on {len(self.teacher)} batches, not {len(batches)}"
        device = model_device(model)
        total, tokens = torch.zeros((), dtype=torch.float64), 0
        for batch, (log_p, index) in zip(batches, self.teacher, strict=True):
            logits = model(input_ids=batch.to(device)).logits  # [b, T, vocab]
            logits = logits.reshape(-1, logits.shape[-1])  # [tokens, vocab]
            total += kl_sum(log_p, index, logits).cpu()
            tokens += logits.shape[0]
        return max(total.item(), 0.0) / tokens

    def cache_bytes(self) -> int:
        return sum(
            p.numel() * p.element_size() + (0 if i is None else i.numel() * i.element_size()) for p, i in self.teacher
        )
