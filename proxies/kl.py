"""``kl``: mean over tokens of KL(p_dense || p_cand), the fitness of EvoPress and Týr-the-Pruner.

    KL_t = sum_{v in K_t} p_t(v) * (log p_t(v) - log q_t(v)),
    p_t = softmax(z_dense[t, K_t]),  q_t = softmax(z_cand[t, K_t])
    score = sum_t KL_t / #tokens          (token-weighted over all batches; lower is better, >= 0)

K_t is the teacher's top-k vocabulary entries at token t; both distributions are renormalised over
K_t, as Týr does (with k >= vocab, K_t is the whole vocabulary and this is the exact KL). The teacher
side is cached once per batch as k logits (``cache_dtype``) and k int32 indices: tokens * k * 6 bytes
in bfloat16, 8 in float32 (the default, so that KL(dense || dense) is exactly 0). Every position is
scored, the last one too (the distribution over the next token is defined everywhere).

EvoPress (Sieberling et al., 2024), https://arxiv.org/abs/2410.14649: top-k with k >= 512 is about as
good as full KL; Týr-the-Pruner (Li et al., 2025), https://arxiv.org/abs/2503.09657: k = 8192.
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

    from transformers import PreTrainedModel

    from supernet.switch import Switcher

log = logging.getLogger(__name__)

CACHE_DTYPES = ("float32", "bfloat16", "float16")


def topk_kl(teacher_values: torch.Tensor, teacher_index: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Per-token KL(p || q) renormalised over the teacher's top-k (Týr).

    teacher_values: [tokens, k] teacher logits at ``teacher_index`` [tokens, k] (int32);
    student_logits: [tokens, vocab]. Returns [tokens], float32, clamped at 0 (rounding only).
    """
    log_p = F.log_softmax(teacher_values.float(), dim=-1)  # [tokens, k]
    gathered = student_logits.float().gather(-1, teacher_index.long())  # [tokens, k]
    log_q = F.log_softmax(gathered, dim=-1)  # [tokens, k]
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)


def full_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """Per-token KL(p || q) over the whole vocabulary. logits: [tokens, vocab] -> [tokens]."""
    log_p = F.log_softmax(teacher_logits.float(), dim=-1)
    log_q = F.log_softmax(student_logits.float(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0.0)


class KLProxy(Proxy):
    """Token-weighted mean KL(dense || candidate) over the teacher's top-k. Lower is better; 0 = dense."""

    name = "kl"
    needs_grad = False

    def __init__(self, switcher: Switcher, *, top_k: int = 8192, cache_dtype: str = "float32") -> None:
        super().__init__(switcher)
        if top_k < 1:
            raise UsageError(f"proxy.kl_top_k={top_k} must be >= 1 (a value >= the vocabulary means full KL)")
        if cache_dtype not in CACHE_DTYPES:
            raise UsageError(f"proxy.kl_cache_dtype={cache_dtype!r} is not one of {', '.join(CACHE_DTYPES)}")
        self.top_k = top_k
        self.cache_dtype = getattr(torch, cache_dtype)
        self.teacher: list[tuple[torch.Tensor, torch.Tensor]] = []  # per batch: values, int32 indices [tokens, k]

    @torch.no_grad()
    def prepare(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> None:
        device = model_device(model)
        self.teacher = []
        for batch in batches:
            logits = model(input_ids=batch.to(device)).logits  # [b, T, vocab]
            logits = logits.reshape(-1, logits.shape[-1]).float()  # [tokens, vocab]
            k = min(self.top_k, logits.shape[-1])
            values, index = logits.topk(k, dim=-1, sorted=False)  # [tokens, k]
            self.teacher.append((values.to(self.cache_dtype), index.to(torch.int32)))
        log.info("kl: cached teacher top-%d logits of %d batches, %.1f MiB",
                 min(self.top_k, logits.shape[-1]), len(self.teacher), self.cache_bytes() / 2**20)  # fmt: skip

    @torch.no_grad()
    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        assert len(batches) == len(self.teacher), (
            f"kl was prepared on {len(self.teacher)} batches, scored on {len(batches)}: call prepare first"
        )
        device = model_device(model)
        total = torch.zeros((), dtype=torch.float64)
        tokens = 0
        for batch, (values, index) in zip(batches, self.teacher, strict=True):
            logits = model(input_ids=batch.to(device)).logits  # [b, T, vocab]
            logits = logits.reshape(-1, logits.shape[-1])  # [tokens, vocab]
            total += topk_kl(values, index, logits).double().sum().cpu()
            tokens += logits.shape[0]
        return total.item() / tokens

    def cache_bytes(self) -> int:
        return sum(v.numel() * v.element_size() + i.numel() * i.element_size() for v, i in self.teacher)
