"""The distillation loss against its definition: KL(p^T || q^T) x T^2 over full or top-k distributions, and CE."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from proxies.kl import full_kl, teacher_log_probs, topk_kl
from search.heal.loss import ce_sum, kd_sum_full, kd_sum_topk

TOKENS, VOCAB = 12, 40


def logits(seed: int) -> torch.Tensor:
    return torch.randn(TOKENS, VOCAB, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 3


def brute_kl(p_logits: torch.Tensor, q_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum_t sum_v p log(p / q), with p = softmax(z / T) written out, in float64."""
    p = torch.exp(p_logits / temperature) / torch.exp(p_logits / temperature).sum(-1, keepdim=True)
    q = torch.exp(q_logits / temperature) / torch.exp(q_logits / temperature).sum(-1, keepdim=True)
    return (p * (p / q).log()).sum()


def test_full_kd_is_the_kl_proxy_at_t1_and_the_tempered_kl_otherwise() -> None:
    teacher, student = logits(0), logits(1)
    torch.testing.assert_close(kd_sum_full(teacher, student, 1.0).double(), full_kl(teacher, student).sum().double(),
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    for temperature in (0.5, 2.0, 4.0):
        torch.testing.assert_close(kd_sum_full(teacher, student, temperature).double(),
                                   brute_kl(teacher, student, temperature), rtol=1e-5, atol=1e-5)  # fmt: skip


def test_topk_kd_from_the_kl_proxys_cache_format() -> None:
    teacher, student = logits(2), logits(3)
    log_p, index = teacher_log_probs(teacher, 8)  # [tokens, 8] and its vocabulary ids
    values = teacher.gather(-1, index.long())
    torch.testing.assert_close(kd_sum_topk(log_p, index, student, 1.0).double(), topk_kl(values, index, student).sum()
                               .double(), rtol=1e-5, atol=1e-5)  # fmt: skip
    # tempering the cached log-probabilities is tempering the teacher's top-k logits
    brute = brute_kl(values, student.gather(-1, index.long()), 3.0)
    torch.testing.assert_close(kd_sum_topk(log_p, index, student, 3.0).double(), brute, rtol=1e-5, atol=1e-5)
    # k = vocabulary: the cache holds every entry in order, and the loss is the full one
    log_all, none = teacher_log_probs(teacher, VOCAB)
    assert none is None
    torch.testing.assert_close(kd_sum_topk(log_all, None, student, 2.0), kd_sum_full(teacher, student, 2.0))


def test_ce_is_the_next_token_cross_entropy_summed() -> None:
    windows = torch.randint(0, VOCAB, (3, 5), generator=torch.Generator().manual_seed(4))
    z = torch.randn(3, 5, VOCAB, generator=torch.Generator().manual_seed(5))
    expected = -sum(F.log_softmax(z[b, t], -1)[windows[b, t + 1]] for b in range(3) for t in range(4))
    torch.testing.assert_close(ce_sum(z, windows), expected)
