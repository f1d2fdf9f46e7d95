"""``strata-proxies``: the proxy report as a Hydra app (config ``conf/proxies.yaml``).

    strata-proxies model.path=/path/to/hf-model budget.keep=0.5 candidates=40

Prints the table and writes ``proxies.json`` and ``proxies.html`` into the Hydra run directory.
User errors end with one line ``error: ...`` and exit status 2 (``search.cli.hydra_app``). It lives in
``search`` so that ``proxies`` imports only ``supernet`` (DESIGN.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.cli import hydra_app

if TYPE_CHECKING:
    from pathlib import Path

    from proxies.config import ProxyReportConfig


def _report_task(cfg: ProxyReportConfig, run_dir: Path) -> None:
    from proxies.report import format_table, run_report

    report = run_report(cfg, run_dir)
    print(format_table(report))


main = hydra_app("proxies", _report_task)

if __name__ == "__main__":
    main()
