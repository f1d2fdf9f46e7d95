"""Atomic writes of what a run leaves behind: a temporary sibling, then a rename.

A file or folder is either the old one or the complete new one, never half-written. Temporary files
are created private (``mkstemp``: 0600, ``mkdtemp``: 0700); before the rename they get the mode any
other new file would (0666 / 0777 less the umask), so colleagues on a shared cluster can read a run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _publish(path: Path) -> None:
    """Give ``path`` (and a folder's contents) the modes new files get under the umask."""
    mask = _umask()
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, 0o777 & ~mask)
            for name in dirs:
                os.chmod(os.path.join(root, name), 0o777 & ~mask)
            for name in files:
                os.chmod(os.path.join(root, name), 0o666 & ~mask)
    else:
        os.chmod(path, 0o666 & ~mask)


@contextmanager
def atomic_path(path: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; on success it replaces ``path`` (a folder: only
    when ``path`` does not exist or is empty), on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        _publish(tmp)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if directory else tmp.unlink(missing_ok=True)
        raise


def finite_json(data: Any, prefix: str = "") -> tuple[Any, list[str]]:
    """``data`` with every non-finite float (NaN, inf, -inf) replaced by None, and the dotted keys replaced
    (``pruned.ppl``, ``search.iterations[0].best_fitness``): JSON has no literal for them."""
    if isinstance(data, float) and not math.isfinite(data):
        return None, [prefix or "(the value)"]
    if isinstance(data, dict):
        out, keys = {}, []
        for key, value in data.items():
            out[key], found = finite_json(value, f"{prefix}.{key}" if prefix else str(key))
            keys.extend(found)
        return out, keys
    if isinstance(data, (list, tuple)):
        out, keys = [], []
        for i, value in enumerate(data):
            item, found = finite_json(value, f"{prefix}[{i}]")
            out.append(item)
            keys.extend(found)
        return out, keys
    return data, []


def json_text(data: Any, *, name: str = "JSON") -> str:
    """``data`` as strict, indented JSON: non-finite floats become null, with a warning naming their keys."""
    clean, keys = finite_json(data)
    if keys:
        verb = "is" if len(keys) == 1 else "are"
        log.warning("%s: %s %s not a finite number, written as null", name, ", ".join(keys), verb)
    return json.dumps(clean, indent=2, allow_nan=False) + "\n"


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented, strict JSON to ``path`` atomically (NaN and infinities as null, with a warning
    naming the keys: ``json.dumps`` would write the bare ``NaN`` / ``Infinity`` no JSON parser but Python's reads)."""
    path = Path(path)
    text = json_text(data, name=path.name)
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


CACHE_ENV = "STRATA_CACHE_DIR"


def default_root() -> Path:
    """``$STRATA_CACHE_DIR/supernet``, else the platform's user cache directory for strata."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser() / "supernet"
    import platformdirs

    return Path(platformdirs.user_cache_dir("strata")) / "supernet"


def json_hash(value: object) -> str:
    """sha256 of ``value`` serialised as JSON with sorted keys (``str`` for what JSON cannot hold)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
