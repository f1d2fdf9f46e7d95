"""Benchmark: how well does each proxy rank candidates by held-out perplexity on the reference model?

    python bench/proxies.py            # reference "default", keep 0.5, 40 walks + the allocators
    python bench/proxies.py --quick    # reference "tiny", 12 candidates, smaller windows (a minute)

Runs the proxy report (:mod:`search.app.proxy_stats`) and writes ``bench/results/proxies.json`` and
``bench/results/proxies.html`` (``--quick``: ``proxies-quick.*``), then prints the table. The
candidates are right-after-pruning (no retraining), magnitude-ranked variants on the supernet's
level grid, all exactly at the budget.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from search.app.config import ProxyReportConfig  # noqa: E402
from search.app.proxy_report import run_report  # noqa: E402
from search.app.proxy_stats import format_table  # noqa: E402
from supernet.io.data import DataConfig  # noqa: E402
from supernet.io.loading import ModelConfig  # noqa: E402
from supernet.space.budget import BudgetConfig  # noqa: E402

RESULTS = REPO / "bench" / "results"


def config(quick: bool, candidates: int | None) -> ProxyReportConfig:
    if quick:
        data = DataConfig(seq_len=128, calib_sequences=8, eval_seq_len=128, eval_sequences=16)
        return ProxyReportConfig(
            model=ModelConfig(reference="tiny"), data=data, budget=BudgetConfig(keep=0.5),
            candidates=candidates or 12, bootstrap=500,
        )  # fmt: skip
    data = DataConfig(seq_len=256, calib_sequences=16, eval_seq_len=256, eval_sequences=32)
    return ProxyReportConfig(
        model=ModelConfig(reference="default"), data=data, budget=BudgetConfig(keep=0.5),
        candidates=candidates or 40, bootstrap=1000,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the tiny reference model, 12 candidates")
    parser.add_argument("--candidates", type=int, default=None, help="random walks (default 40, quick 12)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = config(args.quick, args.candidates)
    stem = "proxies-quick" if args.quick else "proxies"
    with tempfile.TemporaryDirectory() as tmp:
        report = run_report(cfg, Path(tmp))
        RESULTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(tmp) / "proxies.json", RESULTS / f"{stem}.json")
        shutil.copyfile(Path(tmp) / "proxies.html", RESULTS / f"{stem}.html")
    print(format_table(report))
    print(f"written: {RESULTS / stem}.json, {RESULTS / stem}.html")


if __name__ == "__main__":
    main()
