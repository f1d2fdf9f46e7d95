"""Healing windows: the train split, shuffled by the seed, and never a token of the held-out windows, also where
the held-out windows are cut from the training text itself (a user source without ``data.eval_path``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from search.app.inputs import eval_tokens
from search.heal.data import heal_windows
from supernet.errors import UsageError
from supernet.io.data import DataConfig


@pytest.fixture(scope="module")
def tokenizer(tiny_reference_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_reference_dir)


def ngrams(windows: torch.Tensor, n: int = 24) -> set[tuple[int, ...]]:
    return {tuple(w[i : i + n].tolist()) for w in windows for i in range(len(w) - n + 1)}


@pytest.fixture
def jsonl(heal_text: Path, tmp_path: Path) -> Path:
    """tests/search/conftest.py's random words (any 24 tokens in a row occur once), in a folder of its own."""
    path = tmp_path / "text.jsonl"
    path.write_text(heal_text.read_text())
    return path


def test_windows_never_overlap_the_held_out_windows_of_the_same_text(tokenizer, jsonl: Path) -> None:
    data = DataConfig(source="jsonl", path=str(jsonl), eval_seq_len=64, eval_sequences=8)
    held_out = eval_tokens(data, tokenizer)  # cut from text.jsonl too: there is no data.eval_path
    train = heal_windows(data, tokenizer, seq_len=32, tokens=10**6, seed=0)
    assert not ngrams(held_out) & ngrams(train)
    assert len({tuple(w.tolist()) for w in train}) < len(train)  # 10^6 tokens repeat the windows left
    # the same text with other held-out text: nothing is held out of it, and those windows would overlap
    other = jsonl.parent / "other.jsonl"
    other.write_text(json.dumps({"text": "held out elsewhere " * 200}) + "\n")
    apart = DataConfig(source="jsonl", path=str(jsonl), eval_path=str(other), eval_seq_len=64, eval_sequences=8)
    assert ngrams(held_out) & ngrams(heal_windows(apart, tokenizer, seq_len=32, tokens=10**6, seed=0))


def test_the_order_is_the_seeds(tokenizer, jsonl: Path) -> None:
    data = DataConfig(source="jsonl", path=str(jsonl), eval_seq_len=64, eval_sequences=8)
    first = heal_windows(data, tokenizer, seq_len=64, tokens=64 * 20 - 5, seed=0)
    assert first.shape == (20, 64)
    assert torch.equal(first, heal_windows(data, tokenizer, seq_len=64, tokens=64 * 20, seed=0))
    assert not torch.equal(first, heal_windows(data, tokenizer, seq_len=64, tokens=64 * 20, seed=1))


def test_short_text_repeats_with_a_warning_and_too_short_is_refused(tokenizer, tmp_path: Path, caplog) -> None:
    path = tmp_path / "short.txt"
    path.write_text(" ".join(f"word{i}" for i in range(120)))
    data = DataConfig(source="text", path=str(path), eval_path=str(path), eval_seq_len=16, eval_sequences=1)
    with caplog.at_level(logging.WARNING):
        windows = heal_windows(data, tokenizer, seq_len=16, tokens=16 * 100, seed=0)
    assert windows.shape == (100, 16) and "each is seen up to" in caplog.text
    with pytest.raises(UsageError, match="fewer than one step's 1000"):
        heal_windows(data, tokenizer, seq_len=16, tokens=16, seed=0, min_windows=1000)
