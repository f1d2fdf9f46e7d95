from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import candidates, dense

from proxies.trace_correlation import TraceCorrelationProxy, pearson


def test_pearson_matches_numpy():
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, generator=generator), torch.randn(50, generator=generator)
    assert pearson(x, y + 0.5 * x) == pytest.approx(np.corrcoef(x.numpy(), (y + 0.5 * x).numpy())[0, 1], abs=1e-6)
    assert pearson(torch.ones(5), x[:5]) == 0.0  # constant: no correlation, no NaN


@pytest.mark.parametrize("rank", [0, 4])
def test_dense_against_itself_is_minus_active_sub_blocks(switcher, batches, rank):
    proxy = TraceCorrelationProxy(switcher, projection_rank=rank, seed=3)
    proxy.prepare(switcher.model, batches)
    assert proxy.score(switcher.model, batches) == pytest.approx(-4.0, abs=1e-6)  # 2 layers x (attn, mlp)
    assert list(proxy.last_correlations.values()) == pytest.approx([1.0] * 4, abs=1e-6)


@pytest.mark.parametrize("rank", [0, 4])
def test_candidates_correlate_below_one_on_active_sub_blocks(switcher, batches, rank):
    proxy = TraceCorrelationProxy(switcher, projection_rank=rank)
    proxy.prepare(switcher.model, batches)
    for variants in candidates():
        dense(switcher)
        switcher.apply(variants)
        score = proxy.score(switcher.model, batches)
        active = sum(v is None or v.units.numel() > 0 for v in switcher.current.values())
        assert len(proxy.last_correlations) == active
        assert -active <= score < 0
        assert all(-1.0 <= r <= 1.0 for r in proxy.last_correlations.values())


def test_projection_cache_is_smaller(switcher, batches):
    full, projected = TraceCorrelationProxy(switcher), TraceCorrelationProxy(switcher, projection_rank=2)
    full.prepare(switcher.model, batches)
    projected.prepare(switcher.model, batches)
    assert projected.cache_bytes() < full.cache_bytes()
