"""The healing loss: forward KL from the dense model's next-token distribution, with a temperature, optionally
mixed with the plain LM loss (Hinton et al. 2015, https://arxiv.org/abs/1503.02531; Minitron, Sreenivas et al.
2024, https://arxiv.org/abs/2408.11796, which drops the LM loss):

    loss = (1 - w) * T^2 * mean_t KL(p_t^T || q_t^T) + w * mean_t CE(q_{t}, x_{t+1})
    p_t^T = softmax(z_dense[t] / T),  q_t^T = softmax(z_student[t] / T)

KL runs over every position of a window (the next-token distribution is defined at each, as in proxies/kl.py),
CE over the T - 1 positions that have a next token. With the cached teacher (``heal.teacher=cache``) p is the
teacher's top-k log-probabilities (proxies/kl.py's format) and both sides are renormalised over those k entries
(Týr): tempering a cached log p_t by T is log_softmax(log p_t / T), exact because log p_t = z_t - log Z_t.

Functions return sums over tokens, so micro-batches add up to the step's mean exactly (train.py divides).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_sum_full(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum_t KL(p_t^T || q_t^T) over the whole vocabulary. logits: [tokens, vocab]; float32 scalar."""
    log_p = F.log_softmax(teacher_logits.float() / temperature, dim=-1)  # [tokens, vocab]
    log_q = F.log_softmax(student_logits.float() / temperature, dim=-1)  # [tokens, vocab]
    return F.kl_div(log_q, log_p, reduction="sum", log_target=True)


def kd_sum_topk(
    log_p: torch.Tensor, index: torch.Tensor | None, student_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """sum_t KL(p_t^T || q_t^T) renormalised over the teacher's top-k K_t (Týr).

    log_p: [tokens, k] cached teacher log-probabilities over K_t (T = 1); index: [tokens, k] int32 vocabulary ids
    of K_t (None: the whole vocabulary in order); student_logits: [tokens, vocab]. float32 scalar."""
    z = student_logits if index is None else student_logits.gather(-1, index.long())  # [tokens, k]
    log_q = F.log_softmax(z.float() / temperature, dim=-1)  # [tokens, k]
    log_p = F.log_softmax(log_p.float() / temperature, dim=-1)  # [tokens, k]
    return F.kl_div(log_q, log_p, reduction="sum", log_target=True)


def ce_sum(student_logits: torch.Tensor, windows: torch.Tensor) -> torch.Tensor:
    """sum over the T - 1 predicted positions of -log q(x_{t+1}). student_logits: [b, T, vocab], windows: [b, T]."""
    logits = student_logits[:, :-1].float()  # [b, T - 1, vocab]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), windows[:, 1:].reshape(-1), reduction="sum")
