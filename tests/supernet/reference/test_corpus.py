"""The built-in corpus: what is in it, the deterministic split, the cache key."""

from __future__ import annotations

import hashlib

import pytest

from supernet.errors import UsageError
from supernet.reference.corpus import EXCLUDED_DIRS, corpus_files, corpus_hash, corpus_texts, stdlib_root


def _relative(paths):
    return [path.relative_to(stdlib_root()).as_posix() for path in paths]


def test_splits_are_disjoint_sorted_and_about_one_tenth_eval() -> None:
    train, held_out = _relative(corpus_files("train")), _relative(corpus_files("eval"))
    assert train == sorted(train) and held_out == sorted(held_out)
    assert not set(train) & set(held_out)
    assert 0.05 < len(held_out) / (len(train) + len(held_out)) < 0.15, (len(train), len(held_out))


def test_split_rule_is_the_path_hash() -> None:
    for split in ("train", "eval"):
        for relative in _relative(corpus_files(split)):
            in_eval = int(hashlib.sha1(relative.encode()).hexdigest(), 16) % 10 == 0
            assert in_eval == (split == "eval"), relative


def test_only_library_python_files() -> None:
    relatives = _relative(corpus_files("train") + corpus_files("eval"))
    assert all(relative.endswith(".py") for relative in relatives)
    assert not any(EXCLUDED_DIRS.intersection(relative.split("/")[:-1]) for relative in relatives)
    assert {"os.py", "json/__init__.py"} <= set(relatives)


def test_texts_and_max_chars() -> None:
    texts = corpus_texts("eval")
    assert texts and all(isinstance(text, str) and text for text in texts)
    short = corpus_texts("train", max_chars=50_000)
    assert sum(map(len, short)) >= 50_000
    assert sum(map(len, short[:-1])) < 50_000  # stops at the first text that reaches the limit


def test_hash_is_stable_hex() -> None:
    assert corpus_hash() == corpus_hash()
    assert len(corpus_hash()) == 40 and int(corpus_hash(), 16) >= 0


def test_unknown_split_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="validation"):
        corpus_files("validation")
