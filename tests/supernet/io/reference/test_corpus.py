"""The built-in corpus: what is in it, the deterministic split, the cache key."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

import pytest

from supernet.errors import UsageError
from supernet.io.reference.corpus import (
    EXCLUDED_DIRS,
    STDLIB_ENV,
    _all_files,
    corpus_files,
    corpus_hash,
    corpus_texts,
    stdlib_root,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


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


@pytest.fixture
def tmp_corpus(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], str]]:
    """``hash_of(root)``: the corpus hash of the standard library tree at ``root`` (read through
    ``$STRATA_STDLIB_DIR``; the cached file list is cleared before each read and after the test)."""

    def hash_of(root: Path) -> str:
        monkeypatch.setenv(STDLIB_ENV, str(root))
        _all_files.cache_clear()
        return corpus_hash()

    yield hash_of
    _all_files.cache_clear()  # the next test reads the real standard library again


def _write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


SMALL_TREE = {
    "os.py": "import sys\n",
    "json/__init__.py": "from .decoder import JSONDecoder\n",
    "json/decoder.py": "class JSONDecoder:\n    pass\n",
    "email/utils.py": "def quote(s):\n    return s\n",
}


def test_hash_is_hex_and_stable_for_an_unchanged_corpus(tmp_path: Path, tmp_corpus) -> None:
    root = _write_tree(tmp_path / "lib", SMALL_TREE)
    first = tmp_corpus(root)
    assert re.fullmatch(r"[0-9a-f]{40}", first), first
    assert tmp_corpus(root) == first


def test_hash_depends_on_the_corpus_not_on_where_it_lies(tmp_path: Path, tmp_corpus) -> None:
    first = tmp_corpus(_write_tree(tmp_path / "a", SMALL_TREE))
    assert tmp_corpus(_write_tree(tmp_path / "b" / "lib", SMALL_TREE)) == first  # same files elsewhere


def test_hash_changes_with_the_corpus(tmp_path: Path, tmp_corpus) -> None:
    root = _write_tree(tmp_path / "lib", SMALL_TREE)
    original = tmp_corpus(root)

    # the hash reads paths and sizes, not bytes: this edit changes the length (one that keeps it goes unseen)
    (root / "json/decoder.py").write_text(SMALL_TREE["json/decoder.py"] + "    x = 1\n", encoding="utf-8")
    edited = tmp_corpus(root)
    assert edited != original, "editing a file's content left the hash unchanged"
    _write_tree(root, {"abc.py": "ABC = 1\n"})
    added = tmp_corpus(root)
    assert added not in (original, edited), "adding a file left the hash unchanged"
    (root / "abc.py").rename(root / "abd.py")
    renamed = tmp_corpus(root)
    assert renamed not in (original, edited, added), "renaming a file left the hash unchanged"

    (root / "abd.py").unlink()
    assert tmp_corpus(root) == edited  # removing the added file undoes its change
    (root / "json/decoder.py").write_text(SMALL_TREE["json/decoder.py"], encoding="utf-8")
    assert tmp_corpus(root) == original  # the original files again: the original hash


def test_hash_ignores_files_outside_the_corpus(tmp_path: Path, tmp_corpus) -> None:
    root = _write_tree(tmp_path / "lib", SMALL_TREE)
    original = tmp_corpus(root)
    _write_tree(root, {f"{excluded}/extra.py": "X = 1\n" for excluded in sorted(EXCLUDED_DIRS)})
    _write_tree(root, {"README.txt": "not python\n", "json/notes.md": "# notes\n"})
    assert tmp_corpus(root) == original


def test_unknown_split_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="validation"):
        corpus_files("validation")
