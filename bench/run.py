"""Run every benchmark, then write and print the summary.

    python -m bench [--quick] [--only NAME ...] [--skip NAME ...]

Each benchmark runs in a fresh subprocess (``python -m bench.<name>``: peak memory and thread settings
never carry over from one to the next) and writes ``bench/results/<name>.json`` (``<name>-quick.json``
with ``--quick``): the machine, the versions, its config and its figures. Then ``summary.json`` and
``summary.md`` (``summary-quick.*``) collect the headline figures against their targets
(:mod:`bench.summary`) followed by every benchmark's own table, and the markdown is printed.

Performance (issue 7): ``speed``, ``scoring``, ``memory``, ``growth``; llama.cpp serving: ``serve``; lm-eval
accuracy of the searched model against the baselines (issue 27): ``eval``. Quality
and scale-out (issues 3-6): ``supernet``, ``proxies``, ``search``, ``workers``; their ``--quick`` runs use
the tiny reference model, so that ``python -m bench --quick`` stays under 10 minutes on 2 cores. The full
``search`` takes hours on a CPU (1000 trials): run it on a GPU (``--only search`` with ``python -m
bench.search --device cuda`` by hand) or skip it.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time

from bench import summary
from bench.common import RESULTS, ROOT, child_python, machine
from supernet.io.files import write_json, write_text

BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {  # name -> (full arguments, --quick arguments)
    "speed": ([], ["--quick"]),
    "scoring": ([], ["--quick"]),
    "memory": ([], ["--quick"]),
    "growth": ([], ["--quick"]),
    "supernet": ([], ["--quick", "--model", "tiny", "--out", str(RESULTS / "supernet-quick.json")]),
    "proxies": ([], ["--quick"]),
    "search": ([], ["--quick", "--model", "tiny", "--out", str(RESULTS / "search-quick.json")]),
    "workers": ([], ["--quick", "--out", str(RESULTS / "workers-quick.json")]),
    "zoo": ([], ["--quick", "--models", "zoo-llama3"]),
    "default_run": ([], ["--quick"]),
    "serve": ([], ["--quick"]),
    "eval": ([], ["--quick"]),
}


# benchmark -> (module it needs, the extra that installs it)
REQUIRES = {"workers": ("ray", "dev"), "serve": ("llama_cpp", "serve"), "eval": ("lm_eval", "eval")}


def run_one(name: str, quick: bool) -> dict:
    """Run benchmark ``name``; its stderr streams through, its stdout (the table) is kept."""
    full, fast = BENCHMARKS[name]
    print(f"== {name}", file=sys.stderr, flush=True)
    if name in REQUIRES and importlib.util.find_spec(REQUIRES[name][0]) is None:
        module, extra = REQUIRES[name]
        note = f"skipped: needs {module} (pip install -e '.[{extra}]')"
        return {"returncode": 0, "wall_s": 0.0, "stdout": note, "skipped": True}
    start = time.perf_counter()
    proc = subprocess.run(child_python(f"bench.{name}", *(fast if quick else full)), cwd=ROOT, stdout=subprocess.PIPE,
                          text=True, check=False)  # fmt: skip
    wall = time.perf_counter() - start
    print(proc.stdout, file=sys.stderr, flush=True)
    return {"returncode": proc.returncode, "wall_s": wall, "stdout": proc.stdout}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every benchmark in its quick mode (< 10 min)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=None, help="run only these")
    parser.add_argument("--skip", nargs="+", choices=list(BENCHMARKS), default=[], help="do not run these")
    args = parser.parse_args(argv)
    names = [n for n in (args.only or BENCHMARKS) if n not in args.skip]
    start_machine, start = machine(), time.perf_counter()
    runs = {name: run_one(name, args.quick) for name in names}
    wall = time.perf_counter() - start
    values = summary.figures(RESULTS, args.quick)
    met = summary.targets(values)
    stem = "summary-quick" if args.quick else "summary"
    body = {"quick": args.quick, "machine": start_machine, "wall_s": wall, "figures": values, "targets": met,
            "benchmarks": {n: {k: v for k, v in r.items() if k != "stdout"} for n, r in runs.items()}}  # fmt: skip
    write_json(RESULTS / f"{stem}.json", body)
    text = summary.markdown(values, met, runs, quick=args.quick, wall_s=wall, machine=start_machine)
    write_text(RESULTS / f"{stem}.md", text)
    print(text)
    return 0 if all(r["returncode"] == 0 for r in runs.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
