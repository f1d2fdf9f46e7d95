"""Shared fixtures: the tiny built-in reference model, built once per test session."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="session")
def tiny_reference_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The ``tiny`` reference model, trained into a session-temporary ``STRATA_CACHE_DIR`` (a few seconds).

    ``STRATA_CACHE_DIR`` stays pointed there for the rest of the session, so ``reference_model_dir("tiny")``
    finds this build; the previous value is restored at the end.
    """
    from supernet.io.reference.build import CACHE_ENV, reference_model_dir

    previous = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("strata-cache"))
    try:
        yield reference_model_dir("tiny")
    finally:
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = previous
