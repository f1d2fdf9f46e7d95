"""The floating-point dtypes strata loads weights in and stores tensors in, by the names its config uses."""

from __future__ import annotations

DTYPES = ("float32", "bfloat16", "float16")  # model.dtype, supernet.store_dtype, proxy.kl_cache_dtype
