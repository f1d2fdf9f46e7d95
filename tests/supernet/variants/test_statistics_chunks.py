"""Statistics reduced in chunks of rows equal the closed form over all tokens."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from supernet.variants.statistics import StatsAccumulator


def test_chunked_reduction_matches_closed_form():
    x = torch.randn(5, 9, 7, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    acc = StatsAccumulator(7, gram=True, gram_dtype=torch.float64, chunk_elements=2 * 7)  # 2 rows per chunk
    acc.update(x[:3])  # 27 rows: 14 chunks, the last one short
    acc.update(x[3:])
    stats = acc.finalize()
    flat = x.reshape(-1, 7).double()
    assert stats.count == 45
    assert_close(stats.mean, flat.mean(0), rtol=1e-12, atol=1e-12)
    assert_close(stats.var, flat.var(0, unbiased=False), rtol=1e-10, atol=1e-12)
    assert_close(stats.sq_norm, flat.pow(2).sum(0), rtol=1e-12, atol=1e-12)
    assert_close(stats.gram, flat.T @ flat, rtol=1e-12, atol=1e-12)
