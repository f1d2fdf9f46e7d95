"""Prefix reuse: the same logits and KL as a full forward, whatever the order of candidates and the memory cap."""

from __future__ import annotations

import torch
from conftest import VOCAB, candidates, dense

from proxies.kl import KLProxy, full_kl, kl_sum, teacher_log_probs, topk_kl
from proxies.prefix import PrefixForward
from supernet.variants.switch import Variant

TOL = {"rtol": 1e-5, "atol": 1e-6}  # float32 on the same inputs: only the summation order may differ


def offspring() -> list[dict]:
    """A parent (layer 0 narrowed) and children changing layer 1 only, then layer 0 (no shared prefix)."""
    parent = {(0, "mlp"): Variant(torch.arange(32))}
    return [
        parent,
        {**parent, (1, "mlp"): Variant(torch.arange(0, 64, 2))},
        {**parent, (1, "attn"): Variant(torch.tensor([0]))},
        {**parent, (1, "attn"): Variant(torch.tensor([], dtype=torch.long))},
        {(0, "mlp"): Variant(torch.arange(16)), (1, "mlp"): None},
    ]


def test_logits_equal_the_full_forward(switcher, batches):
    forward = PrefixForward(switcher)
    for variants in [{}, *candidates(), *offspring()]:
        dense(switcher)
        switcher.apply(variants)
        for b, batch in enumerate(batches):
            expected = switcher.model(input_ids=batch, use_cache=False).logits
            torch.testing.assert_close(forward.logits(switcher.model, b, batch), expected, **TOL)


def test_reuse_gives_the_score_of_a_full_forward_and_skips_layers(switcher, batches):
    reused, full = KLProxy(switcher), KLProxy(switcher, reuse_bytes=0)
    for proxy in (reused, full):
        proxy.prepare(switcher.model, batches)
    for variants in offspring():
        dense(switcher)
        switcher.apply(variants)
        torch.testing.assert_close(reused.score(switcher.model, batches), full.score(switcher.model, batches), **TOL)
    assert full.forward.layers_reused == 0 and not full.forward.store
    # children 1-3 start at layer 1 from the parent's stored input (one layer saved per batch each)
    assert reused.forward.layers_reused >= 3 * len(batches)


def test_memory_cap_is_kept_and_results_unchanged(switcher, batches):
    one_state = batches[0].numel() * switcher.adapter.geometry.hidden * 4  # bytes of one stored h_i (float32)
    capped, full = KLProxy(switcher, reuse_bytes=one_state), KLProxy(switcher, reuse_bytes=0)
    for proxy in (capped, full):
        proxy.prepare(switcher.model, batches)
    for variants in offspring():
        dense(switcher)
        switcher.apply(variants)
        torch.testing.assert_close(capped.score(switcher.model, batches), full.score(switcher.model, batches), **TOL)
        assert capped.forward.bytes <= one_state


def test_kl_sum_equals_the_per_token_reference():
    generator = torch.Generator().manual_seed(0)
    vocab = 4096  # 16 rows per chunk (kl.CHUNK_ELEMENTS): 150 tokens span ten chunks, the last one short
    teacher, student = torch.randn(150, vocab, generator=generator), torch.randn(150, vocab, generator=generator)
    log_p, index = teacher_log_probs(teacher, vocab)
    assert index is None
    torch.testing.assert_close(kl_sum(log_p, index, student), full_kl(teacher, student).double().sum(), rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    log_p, index = teacher_log_probs(teacher, 100)
    values, top = teacher.topk(100, dim=-1, sorted=False)
    torch.testing.assert_close(index, top.int())
    reference = topk_kl(values, top.int(), student).double().sum()
    torch.testing.assert_close(kl_sum(log_p, index, student), reference, rtol=1e-5, atol=1e-6)


def test_full_vocabulary_stores_no_index(switcher, batches):
    proxy = KLProxy(switcher, top_k=VOCAB)
    proxy.prepare(switcher.model, batches)
    tokens = sum(b.numel() for b in batches)
    assert all(index is None for _, index in proxy.teacher)
    assert proxy.cache_bytes() == tokens * VOCAB * 4


def test_a_change_of_expert_count_alone_is_seen() -> None:
    """A mixture with ``expert_unit=both``: candidates differing only in one layer's expert count (the
    third module of a layer) get the logits of a full forward, not the stored ones of the other."""
    from moe_models import tiny_moe

    from supernet.io.adapters import adapter_for
    from supernet.variants.switch import Switcher

    model = tiny_moe("qwen3_moe")
    switcher = Switcher(model, adapter_for(model.config, expert_unit="both"))
    forward = PrefixForward(switcher)
    batch = torch.randint(3, 97, (2, 12), generator=torch.Generator().manual_seed(0))
    width = Variant(torch.arange(16).repeat(8, 1))
    for experts in ([0, 1, 2, 3, 4, 5, 6, 7], [1, 2, 5], [0, 6], [1, 2, 5]):
        switcher.apply({(1, "mlp"): width, (1, "experts"): Variant(torch.tensor(experts))})
        expected = model(input_ids=batch, use_cache=False).logits
        torch.testing.assert_close(forward.logits(model, 0, batch), expected, **TOL)
    assert forward.layers_reused > 0
