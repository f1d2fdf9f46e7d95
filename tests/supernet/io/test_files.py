"""Atomic writes leave complete files with the modes any new file gets (readable by others under 022)."""

from __future__ import annotations

import os
import stat

import pytest

from supernet.io.files import atomic_path, write_json


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_json_and_folders_get_the_umask_modes(tmp_path, umask_022):
    write_json(tmp_path / "metrics.json", {"a": 1})
    assert mode(tmp_path / "metrics.json") == 0o644
    with atomic_path(tmp_path / "model", directory=True) as tmp:
        (tmp / "weights.bin").write_bytes(b"x")
    assert mode(tmp_path / "model") == 0o755 and mode(tmp_path / "model" / "weights.bin") == 0o644


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "model", directory=True) as tmp:
        (tmp / "half").write_bytes(b"x")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
