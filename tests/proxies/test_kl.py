from __future__ import annotations

import pytest
import torch
from conftest import VOCAB, candidates, dense

from proxies.kl import KLProxy, full_kl, topk_kl


def test_dense_against_itself_is_zero(switcher, batches):
    proxy = KLProxy(switcher, top_k=16)
    proxy.prepare(switcher.model, batches)
    assert proxy.score(switcher.model, batches) == 0.0


def test_never_negative_and_positive_off_dense(switcher, batches):
    proxy = KLProxy(switcher)
    proxy.prepare(switcher.model, batches)
    for variants in candidates():
        dense(switcher)
        switcher.apply(variants)
        assert proxy.score(switcher.model, batches) > 0.0


def test_topk_approaches_full_kl(switcher, batches):
    proxies = {k: KLProxy(switcher, top_k=k) for k in (1, 4, 16, 64, VOCAB)}
    for proxy in proxies.values():
        proxy.prepare(switcher.model, batches)
    switcher.apply(candidates()[0])
    scores = {k: p.score(switcher.model, batches) for k, p in proxies.items()}
    assert scores[1] == 0.0  # one entry renormalised: both sides are 1
    gaps = [abs(scores[k] - scores[VOCAB]) for k in (1, 4, 16, 64)]
    assert gaps == sorted(gaps, reverse=True), gaps
    assert gaps[-1] < 0.2 * scores[VOCAB]


def test_full_vocabulary_equals_closed_form(switcher, batches):
    proxy = KLProxy(switcher, top_k=10 * VOCAB)
    proxy.prepare(switcher.model, batches)
    teacher = [switcher.model(input_ids=b).logits.reshape(-1, VOCAB) for b in batches]
    switcher.apply(candidates()[1])
    student = [switcher.model(input_ids=b).logits.reshape(-1, VOCAB) for b in batches]
    p = torch.cat(teacher).double().softmax(-1)
    q = torch.cat(student).double().softmax(-1)
    expected = (p * (p.log() - q.log())).sum(-1).mean().item()
    assert proxy.score(switcher.model, batches) == pytest.approx(expected, rel=1e-4)


def test_topk_kl_matches_full_kl_at_full_k():
    generator = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(5, 11, generator=generator), torch.randn(5, 11, generator=generator)
    values, index = teacher.topk(11)
    torch.testing.assert_close(topk_kl(values, index.int(), student), full_kl(teacher, student), rtol=1e-5, atol=1e-6)


def test_cache_bytes(switcher, batches):
    proxy = KLProxy(switcher, top_k=8, cache_dtype="bfloat16")
    proxy.prepare(switcher.model, batches)
    tokens = sum(b.numel() for b in batches)
    assert proxy.cache_bytes() == tokens * 8 * 6  # bf16 value + int32 index per entry (Týr)
