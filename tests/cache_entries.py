"""The supernet cache's entries under a root, as the tests look at them (an entry is a folder with a manifest)."""

from __future__ import annotations

from pathlib import Path

from supernet.variants.cache import MANIFEST


def entries(root: Path) -> set[Path]:
    """Every cache entry directory under ``root``."""
    return {p for p in Path(root).iterdir() if (p / MANIFEST).is_file()}


def only_entry(root: Path) -> Path:
    """The one entry under ``root``."""
    (entry,) = entries(root)
    return entry
