"""The proxy report's candidates are on the budget it names: its level grid is the main run's
(``supernet.space.budget.budget_grid``) for every ``budget.kind``, not a block-parameter grid."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from search.app.config import ProxyReportConfig
from search.app.inputs import load_inputs
from search.app.proxy_report import run_report
from supernet.io.data import DataConfig
from supernet.io.loading import ModelConfig
from supernet.space.budget import BudgetConfig, budget_grid
from supernet.variants.config import SupernetConfig

if TYPE_CHECKING:
    from pathlib import Path


def config(budget: BudgetConfig) -> ProxyReportConfig:
    """The cheapest report: FLAP + bias variants, two free proxies, few windows, candidates and resamples."""
    data = DataConfig(seq_len=32, calib_sequences=4, eval_seq_len=32, eval_sequences=4)
    supernet = SupernetConfig(criterion="flap", compensation="bias")
    return ProxyReportConfig(model=ModelConfig(reference="tiny"), data=data, budget=budget, supernet=supernet,
                             proxies=["params", "flops"], candidates=4, bootstrap=10, progress=False)  # fmt: skip


@pytest.mark.parametrize(
    "budget",
    [BudgetConfig(kind="flops", keep=0.5, seq_len=512), BudgetConfig(kind="total_params", keep=0.8)],
    ids=["flops", "total_params"],
)
def test_candidates_are_on_the_budget_the_report_names(
    tiny_reference_dir: Path, tmp_path: Path, budget: BudgetConfig
) -> None:
    """Every candidate (walks and allocators) costs, in what ``budget.kind`` counts, at most the main run's
    budget and more than it less one MLP step; proxies.json records that grid's budget."""
    cfg = config(budget)
    report = run_report(cfg, tmp_path)
    inputs = load_inputs(cfg.model, cfg.data, device=cfg.device, attn_unit=cfg.supernet.attn_unit, seed=cfg.seed,
                         expert_unit=cfg.supernet.expert_unit, progress=False)  # fmt: skip
    grid = budget_grid(inputs.model, inputs.adapter, cfg.budget, cfg.supernet)
    slack = grid.step_cost("mlp")
    costs = [grid.cost(levels) for levels in report["levels"]]
    assert len(costs) >= cfg.candidates
    off = [
        (name, cost)
        for name, cost in zip(report["names"], costs, strict=True)
        if not grid.budget - slack < cost <= grid.budget
    ]
    assert not off, f"{budget.kind} budget {grid.budget} (slack {slack}): candidates off it {off}"
    assert all(grid.on_budget(levels) for levels in report["levels"])
    expected = {"kind": budget.kind, "keep": budget.keep, "dense_cost": grid.dense_cost(), "target_cost": grid.budget,
                "slack": slack, "costs": costs}  # fmt: skip
    if budget.kind == "flops":
        expected["seq_len"] = budget.seq_len
    assert report["budget"] == expected
