"""The token cache checks its content: a cache file holding another key's stream is logged and rebuilt."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
import torch

from supernet.io.reference.corpus import corpus_texts
from supernet.io.reference.tokenizer import train_tokenizer
from supernet.io.windows import token_stream

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(corpus_texts("eval", max_chars=50_000), vocab_size=300)


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The cache root (``$STRATA_CACHE_DIR``) of one test; its streams lie in ``tokens/``."""
    monkeypatch.setenv("STRATA_CACHE_DIR", str(tmp_path))
    return tmp_path


def test_swapped_cache_files_are_rebuilt_not_used(
    tokenizer: PreTrainedTokenizerFast, cache_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first_texts, second_texts = ["x = 1\n" * 50, "def f():\n    pass\n"], ["import os\n" * 30]
    first, second = token_stream(tokenizer, first_texts), token_stream(tokenizer, second_texts)
    assert not torch.equal(first, second)
    paths = sorted((cache_root / "tokens").glob("*.safetensors"))
    assert len(paths) == 2
    a, b = (p.read_bytes() for p in paths)  # two valid cache files, swapped on disk
    paths[0].write_bytes(b)
    paths[1].write_bytes(a)
    with caplog.at_level(logging.WARNING, logger="supernet.io.windows"):
        assert torch.equal(token_stream(tokenizer, first_texts), first)
        assert torch.equal(token_stream(tokenizer, second_texts), second)
    assert sum("rebuilding it" in r.getMessage() for r in caplog.records) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="supernet.io.windows"):  # rewritten: read back without a warning
        assert torch.equal(token_stream(tokenizer, first_texts), first)
    assert not caplog.records


def test_cache_file_without_its_key_is_rebuilt(
    tokenizer: PreTrainedTokenizerFast, cache_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream file with no key in its metadata (another writer's, or an older strata's) is not trusted."""
    from safetensors.torch import save_file

    texts = ["while True:\n    break\n" * 20]
    stream = token_stream(tokenizer, texts)
    (path,) = (cache_root / "tokens").glob("*.safetensors")
    save_file({"stream": torch.zeros(7, dtype=torch.int32)}, str(path))
    with caplog.at_level(logging.WARNING, logger="supernet.io.windows"):
        assert torch.equal(token_stream(tokenizer, texts), stream)
    assert any("rebuilding it" in r.getMessage() for r in caplog.records)
