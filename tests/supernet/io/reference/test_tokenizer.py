"""The byte-level BPE tokenizer: training, and an AutoTokenizer reload that gives the very same ids."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from transformers import AutoTokenizer, LlamaConfig

from supernet.io.reference.corpus import corpus_texts
from supernet.io.reference.tokenizer import END_OF_TEXT, TOKENIZER_CLASS, save_tokenizer, train_tokenizer

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(corpus_texts("eval", max_chars=300_000), vocab_size=800)


@pytest.fixture(scope="module")
def sample_texts() -> list[str]:
    texts = corpus_texts("train", max_chars=200_000)
    return [*texts[:6], "naïve café → λ: x ** 2  # ünïcödé, tabs\tand\n\n  spaces  "]


def test_vocabulary_and_special_tokens(tokenizer: PreTrainedTokenizerFast) -> None:
    assert len(tokenizer) == 800
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.pad_token == END_OF_TEXT
    assert tokenizer.eos_token_id == 0


def test_byte_level_round_trip(tokenizer: PreTrainedTokenizerFast, sample_texts: list[str]) -> None:
    for text in sample_texts:
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


@pytest.mark.parametrize("model_type", [None, "llama"])
def test_auto_tokenizer_reload_gives_the_training_ids(
    tokenizer: PreTrainedTokenizerFast, sample_texts: list[str], tmp_path: Path, model_type: str | None
) -> None:
    save_tokenizer(tokenizer, tmp_path)
    if model_type == "llama":
        LlamaConfig(vocab_size=len(tokenizer), eos_token_id=0, bos_token_id=0).save_pretrained(tmp_path)
        assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llama"
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == TOKENIZER_CLASS
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    backend = tokenizer.backend_tokenizer
    for text in sample_texts:
        assert reloaded(text)["input_ids"] == backend.encode(text).ids
    assert reloaded.eos_token_id == tokenizer.eos_token_id
