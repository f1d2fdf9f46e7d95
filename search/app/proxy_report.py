"""``strata-proxies``: the proxy report as a Hydra app (config ``conf/proxies.yaml``).

    strata-proxies model.path=/path/to/hf-model budget.keep=0.5 candidates=40

Loads the model and windows as the main run does (search/app/inputs.py), builds the supernet at the
budget, scores the candidates of :mod:`proxies.report` with every proxy and by held-out perplexity,
prints the table and writes ``proxies.json`` and ``proxies.html`` (one scatter per proxy, the figure
of the run report, plotly inlined) into the Hydra run directory. User errors end with one line
``error: ...`` and exit status 2 (``search.app.cli.hydra_app``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from proxies import make_proxy
from proxies.base import as_batches
from proxies.report import (
    allocator_candidates,
    build_report,
    format_table,
    forward_seconds,
    score_candidates,
    walk_candidates,
)
from search.app.cli import hydra_app
from search.app.inputs import eval_tokens, load_inputs, train_windows
from search.app.report import proxy_figure
from supernet.build import build_supernet, supernet_grid
from supernet.files import write_json, write_text
from supernet.switch import Switcher

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    import torch

    from proxies.config import ProxyReportConfig
    from search.app.inputs import Inputs
    from supernet.build import Supernet

log = logging.getLogger(__name__)


def supernet_space(
    inputs: Inputs, switcher: Switcher, calib_tokens: torch.Tensor, cfg: ProxyReportConfig
) -> tuple[Supernet, Callable[[Sequence[int] | None], None]]:
    """The supernet at the budget, and ``apply(levels)`` installing a candidate (None: the dense model)."""
    adapter = switcher.adapter
    grid = supernet_grid(adapter, cfg.budget.keep, cfg.supernet)
    supernet = build_supernet(inputs.model, adapter, calib_tokens, cfg.supernet, grid, weights=inputs.weights,
                              progress=cfg.progress)  # fmt: skip

    def apply(levels: Sequence[int] | None) -> None:
        if levels is None:
            switcher.apply(dict.fromkeys(switcher.current))
        else:
            supernet.apply(switcher, levels)

    return supernet, apply


def write_html(path: Path, report: dict) -> None:
    """One scatter plot per proxy (x: proxy score, y: held-out ppl), plotly inlined."""
    fig = proxy_figure(report)
    fig.update_layout(title=f"strata proxy report: {report['candidates']} candidates")
    write_text(path, fig.to_html(include_plotlyjs=True))


def run_report(cfg: ProxyReportConfig, out_dir: Path) -> dict:
    """Sample, score and compare; write ``proxies.json`` and ``proxies.html`` into ``out_dir``."""
    inputs = load_inputs(cfg.model, cfg.data, device=cfg.device, attn_unit=cfg.supernet.attn_unit, seed=cfg.seed,
                         expert_unit=cfg.supernet.expert_unit, progress=cfg.progress)  # fmt: skip
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
    report["budget"] = {"kind": cfg.budget.kind, "keep": cfg.budget.keep}
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
