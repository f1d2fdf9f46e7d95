"""The run's own config nodes: a bad export setting is a one-line UsageError naming the choices."""

from __future__ import annotations

import pytest

from search.app.config import ExportConfig
from supernet.errors import UsageError


def test_an_unknown_gguf_dtype_is_refused_with_the_choices() -> None:
    with pytest.raises(UsageError, match="export.gguf_dtype='q4_k' is not one of f32, f16, q8_0"):
        ExportConfig(gguf=True, gguf_dtype="q4_k")
    assert ExportConfig().gguf is False and ExportConfig().gguf_dtype == "f32"
