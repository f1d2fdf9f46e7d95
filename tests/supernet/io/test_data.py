"""Loading text from every source, its user errors, and packing into token windows."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import pytest
import torch

from supernet.errors import UsageError
from supernet.io.data import SOURCES, DataConfig, load_texts
from supernet.io.reference.corpus import corpus_texts
from supernet.io.reference.tokenizer import train_tokenizer
from supernet.io.windows import pack_tokens, token_stream

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedTokenizerFast


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    return train_tokenizer(corpus_texts("eval", max_chars=100_000), vocab_size=400)


def _write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


# builtin


def test_builtin_is_the_corpus() -> None:
    assert load_texts("builtin", split="eval") == corpus_texts("eval")


def test_unknown_source_lists_the_known_ones() -> None:
    with pytest.raises(UsageError, match="unknown data source 'csv'.*jsonl"):
        load_texts("csv", path="x.csv")
    assert set(SOURCES) == {"builtin", "text", "jsonl", "hf_disk", "parquet"}


# text


def test_text_file_and_folder_sorted_recursively(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "ignored.md").write_text("not a .txt")
    assert load_texts("text", path=str(tmp_path)) == ["first", "second"]
    assert load_texts("text", path=str(tmp_path / "a.txt")) == ["first"]


@pytest.mark.parametrize("source", ["text", "jsonl", "hf_disk", "parquet"])
def test_missing_path_is_a_usage_error(tmp_path: Path, source: str) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_texts(source, path=str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="needs a path"):
        load_texts(source)


def test_empty_text_file_and_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(UsageError, match="empty"):
        load_texts("text", path=str(tmp_path / "empty.txt"))
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UsageError, match=r"no \.txt files"):
        load_texts("text", path=str(tmp_path / "nothing"))


# jsonl


def test_jsonl_file_folder_and_text_field(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "a.jsonl", [{"text": "one"}, {"text": "two", "id": 2}])
    (tmp_path / "sub").mkdir()
    _write_jsonl(tmp_path / "sub" / "b.jsonl", [{"text": "three"}])
    assert load_texts("jsonl", path=str(tmp_path)) == ["one", "two", "three"]
    _write_jsonl(tmp_path / "sub" / "b.jsonl", [{"content": "body"}])
    assert load_texts("jsonl", path=str(tmp_path / "sub" / "b.jsonl"), text_field="content") == ["body"]


def test_jsonl_bad_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine"}\n\n{"text": broken\n')
    with pytest.raises(UsageError, match=r"bad\.jsonl:3 is not valid JSON"):
        load_texts("jsonl", path=str(path))


def test_jsonl_missing_field_names_file_and_line(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "x.jsonl", [{"text": "fine"}, {"body": "no text"}])
    with pytest.raises(UsageError, match=r"x\.jsonl:2 has no string field 'text'"):
        load_texts("jsonl", path=str(path))
    path = _write_jsonl(tmp_path / "x.jsonl", [["not", "an", "object"]])
    with pytest.raises(UsageError, match=r"x\.jsonl:1"):
        load_texts("jsonl", path=str(path))


def test_jsonl_without_texts_is_a_usage_error(tmp_path: Path) -> None:
    path = _write_jsonl(tmp_path / "blank.jsonl", [{"text": ""}, {"text": "   "}])
    with pytest.raises(UsageError, match="holds no text"):
        load_texts("jsonl", path=str(path))
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UsageError, match="holds no text"):
        load_texts("jsonl", path=str(tmp_path / "empty.jsonl"))


# hf_disk, parquet


def test_hf_disk_dataset_and_dataset_dict(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    dataset = datasets.Dataset.from_dict({"text": ["alpha", "beta"], "n": [1, 2]})
    dataset.save_to_disk(str(tmp_path / "ds"))
    assert load_texts("hf_disk", path=str(tmp_path / "ds")) == ["alpha", "beta"]
    datasets.DatasetDict({"validation": dataset}).save_to_disk(str(tmp_path / "dd"))
    assert load_texts("hf_disk", path=str(tmp_path / "dd"), split="validation") == ["alpha", "beta"]
    with pytest.raises(UsageError, match="no split 'train'"):
        load_texts("hf_disk", path=str(tmp_path / "dd"))
    with pytest.raises(UsageError, match="no column 'body'"):
        load_texts("hf_disk", path=str(tmp_path / "ds"), text_field="body")


def test_parquet_file_and_folder(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"text": ["x", "y"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": ["z"]}), tmp_path / "b.parquet")
    assert load_texts("parquet", path=str(tmp_path)) == ["x", "y", "z"]
    with pytest.raises(UsageError, match="no column 'body'"):
        load_texts("parquet", path=str(tmp_path / "a.parquet"), text_field="body")


def test_parquet_non_string_column_is_a_usage_error(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"text": [1, 2], "body": ["a", "b"]}), tmp_path / "ints.parquet")
    with pytest.raises(UsageError, match=r"ints.parquet.*column 'text' holds int64, not text: set text_field"):
        load_texts("parquet", path=str(tmp_path / "ints.parquet"))
    assert load_texts("parquet", path=str(tmp_path / "ints.parquet"), text_field="body") == ["a", "b"]
    categories = pa.array(["c", "d"]).dictionary_encode()  # a pandas category column: still text
    pq.write_table(pa.table({"text": categories}), tmp_path / "dict.parquet")
    assert load_texts("parquet", path=str(tmp_path / "dict.parquet")) == ["c", "d"]


@pytest.mark.parametrize("content", [b"", b"text, not parquet"])
def test_file_that_is_not_parquet_is_a_usage_error(tmp_path: Path, content: bytes) -> None:
    pytest.importorskip("pyarrow")
    (tmp_path / "fake.parquet").write_bytes(content)
    with pytest.raises(UsageError, match=r"fake.parquet' is not a readable parquet file .*: give \.parquet files"):
        load_texts("parquet", path=str(tmp_path))


def test_hf_disk_on_a_plain_folder_is_a_usage_error(tmp_path: Path) -> None:
    pytest.importorskip("datasets")
    (tmp_path / "a.txt").write_text("plain text")
    with pytest.raises(UsageError, match=rf"'{re.escape(str(tmp_path))}' is not a dataset saved with save_to_disk"):
        load_texts("hf_disk", path=str(tmp_path))


def test_hf_disk_non_string_column_is_a_usage_error(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": [1, 2]}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(UsageError, match=r"column 'text' holds int64, not text: set text_field"):
        load_texts("hf_disk", path=str(tmp_path / "ds"))


@pytest.mark.parametrize("value", [0, -1])
def test_eval_sequences_below_one_is_a_usage_error(value: int) -> None:
    with pytest.raises(UsageError, match=rf"data.eval_sequences={value} must be >= 1, or null"):
        DataConfig(eval_sequences=value)
    assert DataConfig(eval_sequences=None).eval_sequences is None  # all of the held-out text


# pack_tokens


def test_pack_joins_documents_with_eos(tokenizer: PreTrainedTokenizerFast) -> None:
    first, second = tokenizer("def f(x):")["input_ids"], tokenizer("return x")["input_ids"]
    stream = [*first, tokenizer.eos_token_id, *second]
    texts = ["def f(x):", "return x"]
    tokens = pack_tokens(tokenizer, texts, seq_len=len(stream), num_sequences=None, seed=0)
    assert tokens.dtype == torch.long and tokens.tolist() == [stream]


def test_pack_windows_are_a_seeded_shuffle(tokenizer: PreTrainedTokenizerFast) -> None:
    texts = corpus_texts("eval", max_chars=60_000)
    everything = pack_tokens(tokenizer, texts, seq_len=32, num_sequences=None, seed=0)
    some = pack_tokens(tokenizer, texts, seq_len=32, num_sequences=10, seed=0)
    assert some.shape == (10, 32)
    torch.testing.assert_close(some, everything[:10])
    torch.testing.assert_close(some, pack_tokens(tokenizer, texts, seq_len=32, num_sequences=10, seed=0))
    assert not torch.equal(some, pack_tokens(tokenizer, texts, seq_len=32, num_sequences=10, seed=1))
    # the same windows, only in another order: the sorted rows agree
    ordered = pack_tokens(tokenizer, texts, seq_len=32, num_sequences=None, seed=7)
    assert sorted(map(tuple, ordered.tolist())) == sorted(map(tuple, everything.tolist()))


def test_pack_too_few_tokens_is_a_usage_error(tokenizer: PreTrainedTokenizerFast) -> None:
    with pytest.raises(UsageError, match="seq_len"):
        pack_tokens(tokenizer, ["x = 1"], seq_len=512, num_sequences=None, seed=0)


def test_token_stream_cache_gives_the_same_windows_and_survives_corruption(
    tokenizer: PreTrainedTokenizerFast, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATA_CACHE_DIR", str(tmp_path))
    texts = corpus_texts("eval", max_chars=50_000)
    first = pack_tokens(tokenizer, texts, seq_len=32, num_sequences=10, seed=0)
    (cached,) = (tmp_path / "tokens").glob("*.safetensors")
    assert torch.equal(pack_tokens(tokenizer, texts, seq_len=32, num_sequences=10, seed=0), first)
    cached.write_bytes(b"not safetensors")
    assert torch.equal(pack_tokens(tokenizer, texts, seq_len=32, num_sequences=10, seed=0), first)
    assert token_stream(tokenizer, texts).dtype == torch.int32  # rewritten, readable again
    assert len(list((tmp_path / "tokens").glob("*.safetensors"))) == 1
    other = pack_tokens(tokenizer, texts[:-1], seq_len=32, num_sequences=10, seed=0)  # other texts, other key
    assert len(list((tmp_path / "tokens").glob("*.safetensors"))) == 2
    assert other.shape == first.shape
