"""``strata-summary SWEEP_DIR``: one row per job of a sweep (``strata -m budget.keep=0.3,0.5 seed=0,1``).

A job is a directory under SWEEP_DIR holding ``.hydra/config.yaml`` (Hydra writes one per job, named by
``hydra.sweep.subdir``, e.g. ``budget.keep=0.3,seed=0``). Columns: the job's directory, budget (kept
fraction), seed, sampler, pruned model's held-out perplexity, uniform allocation's perplexity on the same
supernet (searched runs), parameters of the pruned model, finished trials, seconds, and ``status``
(``done`` when ``metrics.json`` exists, else ``incomplete``: still running, failed or killed). Prints
the table and writes it as CSV (``SWEEP_DIR/summary.csv`` unless ``--csv PATH``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from search.app.args import ArgumentParser
from search.app.rundir import read_json, run_config

COLUMNS = ("job", "keep", "seed", "sampler", "ppl", "uniform_ppl", "params", "trials", "seconds", "status")


def job_dirs(sweep_dir: Path) -> list[Path]:
    """Every job directory under ``sweep_dir`` (any depth), sorted by path."""
    return sorted(path.parent.parent for path in Path(sweep_dir).rglob(".hydra/config.yaml"))


def job_row(job_dir: Path, sweep_dir: Path) -> dict:
    """The summary row of one job; absent values are None."""
    config = run_config(job_dir)
    metrics = read_json(job_dir / "metrics.json") or {}
    search = metrics.get("search") or {}
    uniform = (metrics.get("baselines") or {}).get("uniform") or {}
    return {
        "job": job_dir.relative_to(sweep_dir).as_posix() if job_dir != sweep_dir else ".",
        "keep": (metrics.get("budget") or config.get("budget") or {}).get("keep"),
        "seed": config.get("seed"),
        "sampler": (config.get("search") or {}).get("sampler"),
        "ppl": (metrics.get("pruned") or {}).get("ppl"),
        "uniform_ppl": uniform.get("ppl"),
        "params": (metrics.get("pruned") or {}).get("params"),
        "trials": search.get("trials"),
        "seconds": metrics.get("seconds"),
        "status": "done" if metrics else "incomplete",
    }


def summarize(sweep_dir: Path) -> list[dict]:
    """Rows of every job, ordered by budget, seed and job directory."""
    rows = [job_row(job, Path(sweep_dir)) for job in job_dirs(sweep_dir)]
    return sorted(rows, key=lambda r: (r["keep"] is None, r["keep"] or 0, r["seed"] is None, r["seed"] or 0, r["job"]))


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def format_table(rows: list[dict]) -> str:
    """A fixed-width text table of ``rows`` (``-`` for absent values)."""
    cells = [[_cell(row[c]) for c in COLUMNS] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> None:
    """``rows`` as CSV with a header (empty cells for absent values)."""
    with Path(path).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)


def main(argv: list[str] | None = None) -> None:
    """Print the sweep's table and write its CSV; bad paths end with ``error: ...`` and exit 2."""
    from search.app.args import fail

    parser = ArgumentParser(prog="strata-summary", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory (the sweep's hydra.sweep.dir)")
    parser.add_argument("--csv", type=Path, default=None, help="CSV path (default SWEEP_DIR/summary.csv)")
    args = parser.parse_args(argv)
    sweep_dir = args.sweep_dir.expanduser()
    if not sweep_dir.is_dir():
        fail(f"{sweep_dir} is not a directory: give the sweep directory of `strata -m ...` (multirun/<date>/<time>)")
    rows = summarize(sweep_dir)
    if not rows:
        fail(f"{sweep_dir} holds no strata job (no */.hydra/config.yaml): give a sweep or run directory")
    out = (args.csv or sweep_dir / "summary.csv").expanduser()
    print(format_table(rows), flush=True)  # shown whatever becomes of the CSV
    if out.is_dir():
        fail(f"--csv {out} is a directory: give a file path (e.g. {out / 'summary.csv'})")
    try:
        write_csv(rows, out)
    except OSError as exc:  # a missing folder, a file in the way, no permission
        fail(f"cannot write the CSV {out} ({exc.strerror or exc}): give --csv a writable file path")
    print(f"strata-summary: {len(rows)} jobs, CSV in {out}")


if __name__ == "__main__":
    main()
