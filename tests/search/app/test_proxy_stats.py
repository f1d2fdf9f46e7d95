from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.app.proxy_stats import (
    bootstrap_tau_ci,
    kendall_spearman,
    rank_statistics,
    regret,
    top_overlap,
    walk_candidates,
)
from supernet.space.grids import make_grid

REPO = Path(__file__).resolve().parents[3]


def test_statistics_on_a_constructed_example():
    ppl = np.array([10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0, 17.0, 18.0, 19.0])
    assert kendall_spearman(ppl * 2, ppl) == pytest.approx((1.0, 1.0))
    assert kendall_spearman(-ppl, ppl) == pytest.approx((-1.0, -1.0))
    swapped = ppl.copy()
    swapped[[0, 1]] = swapped[[1, 0]]  # one discordant pair of 45
    tau, _ = kendall_spearman(swapped, ppl)
    assert tau == pytest.approx(1 - 2 * 1 / 45)
    assert top_overlap(ppl, ppl) == 1.0 and top_overlap(swapped, ppl) == 0.0  # m = 1
    assert regret(swapped, ppl) == pytest.approx(11.0 / 10.0 - 1)
    assert regret(ppl, ppl) == 0.0
    lo, hi = bootstrap_tau_ci(ppl, ppl, resamples=50, seed=0)
    assert lo == pytest.approx(1.0) and hi == pytest.approx(1.0)
    constant = rank_statistics(np.ones(10), ppl, resamples=20, seed=0)
    assert constant["kendall_tau"] == 0.0 and constant["constant"]


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=30), rng.normal(size=30)
    assert bootstrap_tau_ci(x, x + y, resamples=100, seed=1) == bootstrap_tau_ci(x, x + y, resamples=100, seed=1)
    lo, hi = bootstrap_tau_ci(x, x + y, resamples=100, seed=1)
    assert lo < kendall_spearman(x, x + y)[0] < hi


def test_walks_are_distinct_on_budget_and_seeded():
    grid = make_grid(
        num_layers=4,
        totals={"attn": 4, "mlp": 64},
        unit_params={"attn": 96, "mlp": 3},
        keep=0.5,
        steps={"attn": 1, "mlp": 1},
        radius=2,
        joint=True,
    )
    candidates = walk_candidates(grid, 30, seed=0)
    assert len(candidates) == 30 and candidates[0].name == "uniform"
    assert len({c.levels for c in candidates}) == 30
    assert all(grid.on_budget(c.levels) for c in candidates)
    assert candidates == walk_candidates(grid, 30, seed=0)
    assert candidates != walk_candidates(grid, 30, seed=1)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "search.app.proxy_report", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_report_app_end_to_end(tiny_reference_dir, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text((Path(json.__file__).parent / "decoder.py").read_text() * 2)
    out = tmp_path / "run"
    result = _run(
        [
            f"model.path={tiny_reference_dir}",
            "data.source=text",
            f"data.path={text}",
            "data.seq_len=32",
            "data.calib_sequences=4",
            "data.eval_seq_len=32",
            "data.eval_sequences=8",
            "candidates=6",
            "bootstrap=50",
            "progress=false",
            f"hydra.run.dir={out}",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "proxies.json").read_text())
    assert report["candidates"] >= 6
    for name in ("kl", "ppl", "trace_correlation", "hidden_covariance", "params", "flops"):
        entry = report["proxies"][name]
        for key in ("kendall_tau", "spearman_rho", "top10_overlap", "regret", "cost_vs_forward"):
            assert isinstance(entry[key], float), (name, key)
        lo, hi = entry["tau_ci95"]
        assert -1.0 <= lo <= hi <= 1.0
    assert "plotly" in (out / "proxies.html").read_text()[:200000].lower()
    assert "tau 95% CI" in result.stdout and "trace_correlation" in result.stdout  # the table is printed


def test_report_app_refuses_bad_config(tmp_path):
    result = _run(["candidates=1"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "candidates=1" in result.stderr
    result = _run(["proxies=[kl,nope]"], tmp_path)
    assert result.returncode == 2 and "use one of kl, ppl" in result.stderr
