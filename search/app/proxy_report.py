"""``strata-proxies``: the proxy report as a Hydra app (config ``conf/proxies.yaml``).

    strata-proxies model.path=/path/to/hf-model budget.keep=0.5 candidates=40

Loads the model and windows as the main run does (search/app/inputs.py), builds the supernet on the level
grid of the budget (``budget_grid``: what ``budget.kind`` counts, the main run's grid), scores the candidates
of :mod:`search.app.proxy_stats` with every proxy and by held-out perplexity, prints the table and writes
``proxies.json`` (with the budget each candidate is on, as metrics.json records it) and ``proxies.html`` (one
scatter per proxy, the figure of the run report, plotly inlined) into the Hydra run directory. User errors
end with one line ``error: ...`` and exit status 2 (``search.app.cli.hydra_app``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from proxies import make_proxy
from proxies.base import as_batches
from search.app.cli import hydra_app
from search.app.inputs import eval_tokens, load_inputs, train_windows
from search.app.proxy_stats import (
    allocator_candidates,
    build_report,
    format_table,
    forward_seconds,
    score_candidates,
    walk_candidates,
)
from search.app.report import proxy_figure
from supernet.io.files import write_json, write_text
from supernet.space.budget import budget_grid
from supernet.variants.build import build_supernet
from supernet.variants.switch import Switcher

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import torch

    from search.app.config import ProxyReportConfig
    from search.app.inputs import Inputs
    from search.app.proxy_stats import Candidate
    from supernet.space.budget import BudgetConfig
    from supernet.space.grid import LevelGrid
    from supernet.variants.build import Supernet

log = logging.getLogger(__name__)


def supernet_space(
    inputs: Inputs, switcher: Switcher, calib_tokens: torch.Tensor, cfg: ProxyReportConfig
) -> tuple[Supernet, Callable[[Sequence[int] | None], None]]:
    """The supernet on the budget's level grid (what ``budget.kind`` counts, as the main run builds it), and
    ``apply(levels)`` installing a candidate (None: the dense model)."""
    adapter = switcher.adapter
    grid = budget_grid(inputs.model, adapter, cfg.budget, cfg.supernet)
    supernet = build_supernet(inputs.model, adapter, calib_tokens, cfg.supernet, grid, weights=inputs.weights,
                              progress=cfg.progress)  # fmt: skip

    def apply(levels: Sequence[int] | None) -> None:
        if levels is None:
            switcher.apply(dict.fromkeys(switcher.current))
        else:
            supernet.apply(switcher, levels)

    return supernet, apply


def budget_entry(budget: BudgetConfig, grid: LevelGrid, candidates: Sequence[Candidate]) -> dict:
    """proxies.json's budget, as the main run's metrics.json records it: what is counted, the fraction asked,
    the grid's dense and target cost, the budget rule's slack (one MLP step's cost), and every candidate's cost
    (``target_cost - slack < cost <= target_cost``)."""
    entry = {"kind": budget.kind, "keep": budget.keep}
    if budget.kind == "flops":
        entry["seq_len"] = budget.seq_len
    entry["dense_cost"], entry["target_cost"], entry["slack"] = grid.dense_cost(), grid.budget, grid.step_cost("mlp")
    entry["costs"] = [grid.cost(c.levels) for c in candidates]
    return entry


def write_html(path: Path, report: dict) -> None:
    """One scatter plot per proxy (x: proxy score, y: held-out ppl), plotly inlined."""
    fig = proxy_figure(report)
    fig.update_layout(title=f"strata proxy report: {report['candidates']} candidates")
    write_text(path, fig.to_html(include_plotlyjs=True))


def run_report(cfg: ProxyReportConfig, out_dir: Path) -> dict:
    """Sample, score and compare; write ``proxies.json`` and ``proxies.html`` into ``out_dir``."""
    inputs = load_inputs(cfg.model, cfg.data, device=cfg.device, attn_unit=cfg.supernet.attn_unit, seed=cfg.seed,
                         expert_unit=cfg.supernet.expert_unit, progress=cfg.progress,
                         placement=cfg.placement)  # fmt: skip
    model = inputs.model
    calib_tokens = train_windows(cfg.data, inputs.tokenizer, seed=cfg.seed)[0]
    held_out = eval_tokens(cfg.data, inputs.tokenizer)
    calib = as_batches(calib_tokens, cfg.data.batch_size)
    switcher = Switcher(model, inputs.adapter)
    supernet, apply = supernet_space(inputs, switcher, calib_tokens, cfg)
    grid = supernet.grid
    candidates = walk_candidates(grid, cfg.candidates, seed=cfg.seed, max_walk=cfg.max_walk)
    if cfg.allocators:
        known = {c.levels for c in candidates}
        candidates += [c for c in allocator_candidates(supernet, grid, cfg.budget.keep) if c.levels not in known]
    log.info("scoring %d candidates with %s", len(candidates), ", ".join(cfg.proxies))

    proxies = {name: make_proxy(name, switcher, **cfg.proxy.options(name)) for name in cfg.proxies}
    scores, ppl, seconds = score_candidates(
        model, apply, candidates, proxies,
        calib=calib, held_out=held_out, batch_size=cfg.data.batch_size, progress=cfg.progress,
    )  # fmt: skip
    forward = forward_seconds(model, calib)
    cost = {name: s / forward for name, s in seconds.items()}
    report = build_report(candidates, scores, ppl, cost, resamples=cfg.bootstrap, seed=cfg.seed)
    report["cache_bytes"] = {name: proxy.cache_bytes() for name, proxy in proxies.items()}
    report["forward_seconds"] = forward
    report["model"] = str(inputs.directory)
    report["budget"] = budget_entry(cfg.budget, grid, candidates)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "proxies.json", report)
    write_html(out_dir / "proxies.html", report)
    log.info("proxy report of %d candidates written to %s", len(candidates), out_dir)
    return report


def _report_task(cfg: ProxyReportConfig, run_dir: Path) -> None:
    print(format_table(run_report(cfg, run_dir)))


main = hydra_app("proxies", _report_task)

if __name__ == "__main__":
    main()
