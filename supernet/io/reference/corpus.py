"""The built-in corpus: the Python standard library source of the running interpreter.

Every ``*.py`` file under ``sysconfig.get_paths()["stdlib"]``, without ``site-packages`` and the
test suites (``test``, ``tests``, ``idle_test``, ``idlelib``, ``lib2to3``), sorted by relative path.
The train/eval split is a pure function of the relative path, ``int(sha1(path)) % 10 == 0`` goes to
"eval" (about 10%), so it never changes when files are added elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sysconfig
from functools import cache
from pathlib import Path

from supernet.errors import UsageError

logger = logging.getLogger(__name__)

SPLITS = ("train", "eval")
EXCLUDED_DIRS = frozenset({"site-packages", "test", "tests", "idle_test", "idlelib", "lib2to3", "__pycache__"})
EVAL_MODULUS = 10  # one file in ten (by path hash) is held out


STDLIB_ENV = "STRATA_STDLIB_DIR"  # read the corpus from another interpreter's stdlib (e.g. a copied 3.11 tree)


def stdlib_root() -> Path:
    """The directory of the running interpreter's standard library, or ``$STRATA_STDLIB_DIR``."""
    override = os.environ.get(STDLIB_ENV)
    return Path(override) if override else Path(sysconfig.get_paths()["stdlib"])


def _split_of(relative_path: str) -> str:
    digest = hashlib.sha1(relative_path.encode("utf-8")).hexdigest()
    return "eval" if int(digest, 16) % EVAL_MODULUS == 0 else "train"


@cache
def _all_files() -> tuple[tuple[str, Path], ...]:
    """(relative posix path, absolute path) of every corpus file, sorted by relative path."""
    root = stdlib_root()
    found = []
    for path in root.rglob("*.py"):
        relative = path.relative_to(root)
        if EXCLUDED_DIRS.intersection(relative.parts[:-1]) or not path.is_file():
            continue
        found.append((relative.as_posix(), path))
    assert found, f"no *.py files found under the standard library at {root}"
    return tuple(sorted(found))


def corpus_files(split: str) -> list[Path]:
    """Absolute paths of the corpus files of ``split`` ("train" or "eval"), sorted by relative path."""
    if split not in SPLITS:
        raise UsageError(f"unknown corpus split {split!r}: use one of {', '.join(SPLITS)}")
    return [path for relative, path in _all_files() if _split_of(relative) == split]


def corpus_texts(split: str, max_chars: int | None = None) -> list[str]:
    """The texts of ``split``, read as UTF-8 (undecodable files are skipped).

    Args:
        split: "train" or "eval".
        max_chars: stop once this many characters are collected (the last text is kept whole).
    """
    texts: list[str] = []
    total = 0
    for path in corpus_files(split):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            logger.debug("skipping %s: not UTF-8", path)
            continue
        if not text:
            continue
        texts.append(text)
        total += len(text)
        if max_chars is not None and total >= max_chars:
            break
    return texts


def corpus_hash() -> str:
    """sha1 over the relative paths and sizes of all corpus files; it keys the reference-model cache."""
    digest = hashlib.sha1()
    for relative, path in _all_files():
        digest.update(f"{relative}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()
