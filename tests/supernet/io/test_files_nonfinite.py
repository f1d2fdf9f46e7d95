"""write_json writes strict JSON: a NaN or an infinity is null, with a warning naming where it was."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from supernet.io.files import finite_json, write_json


def strict_load(path: Path):
    """Parse as a strict JSON parser would: the bare NaN / Infinity tokens are refused."""

    def refuse(token: str):
        raise ValueError(f"not JSON: {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


def test_a_nan_perplexity_is_written_as_null_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    iterations = [{"best_fitness": math.inf}, {"best_fitness": 0.5}]
    metrics = {"dense": {"ppl": 12.5}, "pruned": {"ppl": math.nan, "params": 10}, "search": {"iterations": iterations},
               "neg": -math.inf}  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="supernet.io.files"):
        write_json(tmp_path / "metrics.json", metrics)
    data = strict_load(tmp_path / "metrics.json")
    assert data["pruned"] == {"ppl": None, "params": 10} and data["dense"] == {"ppl": 12.5}
    assert data["search"]["iterations"] == [{"best_fitness": None}, {"best_fitness": 0.5}] and data["neg"] is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "metrics.json" in warnings[0]
    for key in ("pruned.ppl", "search.iterations[0].best_fitness", "neg"):
        assert key in warnings[0]
    assert metrics["pruned"]["ppl"] != metrics["pruned"]["ppl"]  # the caller's dict is left as it was


def test_finite_data_is_written_unchanged_and_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = {"a": [1, 2.5, None, "NaN", True], "b": {"c": 0.0}}
    with caplog.at_level(logging.WARNING, logger="supernet.io.files"):
        write_json(tmp_path / "x.json", data)
    assert strict_load(tmp_path / "x.json") == data and not caplog.records
    assert finite_json((1.0, math.nan)) == ([1.0, None], ["[1]"])
