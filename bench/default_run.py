"""The README's main command, timed: bare ``strata`` on the reference model, as a new user runs it.

    python -m bench.default_run [--quick]

Runs ``strata`` (and ``strata search=none``) in a subprocess with an empty ``STRATA_CACHE_DIR`` (no
cached supernet or token stream: what a fresh machine does after the install) into temporary run
directories, and records the wall seconds of each with its ``metrics.json`` figures: dense, uniform,
flap_global and searched held-out ppl and parameters. Issue 12's bound is 10 minutes on 2 CPU cores,
install included (the install is timed separately: about 1.5 minutes). ``--quick``: the no-search run
only. Writes ``bench/results/default_run.json`` (``default_run-quick.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import markdown_table, write_result  # noqa: E402

RUNS = {"strata": [], "strata search=none": ["search=none"]}
BOUND_SECONDS = 600  # issue 12: the main command within 10 minutes on 2 cores, install included


def timed(args: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="strata-default-") as tmp:
        env = {**os.environ, "STRATA_CACHE_DIR": str(Path(tmp) / "cache")}
        run_dir = Path(tmp) / "run"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "search.app.cli", *args, f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env,
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        seconds = time.perf_counter() - start
        metrics = json.loads((run_dir / "metrics.json").read_text())
    row = {"seconds": round(seconds, 1), "dense_ppl": metrics["dense"]["ppl"], "pruned_ppl": metrics["pruned"]["ppl"],
           "pruned_params": metrics["pruned"]["params"]}  # fmt: skip
    for name, entry in metrics.get("baselines", {}).items():
        row[f"{name}_ppl"] = entry["ppl"]
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="strata search=none only")
    args = parser.parse_args(argv)
    runs = {k: v for k, v in RUNS.items() if not args.quick or v}
    rows = {name: timed(overrides) for name, overrides in runs.items()}
    path = write_result("default_run", args.quick, {"bound_seconds": BOUND_SECONDS, "runs": rows})
    print(markdown_table(["command", "seconds", "dense", "uniform", "flap_global", "pruned"], [
        [name, r["seconds"], r["dense_ppl"], r.get("uniform_ppl", ""), r.get("flap_global_ppl", ""), r["pruned_ppl"]]
        for name, r in rows.items()
    ]))  # fmt: skip
    print(f"\n{json.dumps({'written': str(path)})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
