"""Accuracy as the field reports it (lm-evaluation-harness) on the reference model and the zoo at keep 0.5.

    python -m bench.eval [--quick] [--models default zoo-qwen2 ...] [--keep 0.5] [--limit N] [--trials T] [--name NAME]

For every model it runs the main job (bare ``strata``, as :mod:`bench.zoo` does: evo, 200 trials, OBS + refit with
an intercept, fitness held apart) with ``eval.tasks=[strata_nextline]``, so the run itself evaluates dense,
uniform, flap_global and searched on strata's shipped multiple-choice task (the start of a held-out Python
function, its true next line among 4; chance 0.25) and writes ``eval.json``. It reports ``acc`` and ``acc_norm``
with lm-eval's stderr, and the aims of issue 27 on ``acc_norm`` (per-byte normalised, as the papers' ARC and
HellaSwag numbers): searched keeps >= 95% of dense accuracy, and beats uniform by more than the stderr (the larger of
the two models'). ``--quick``: the reference model alone, 48 trials, 200 documents. Writes
``bench/results/<--name>.json`` (default ``eval.json``; ``eval-quick.json``) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import markdown_table, print_result, setup, write_result  # noqa: E402
from bench.zoo import MODELS as ZOO_MODELS  # noqa: E402
from bench.zoo import run_config  # noqa: E402
from search.evaluate.config import EvalConfig  # noqa: E402

log = logging.getLogger("bench.eval")
TASK = "strata_nextline"
METRICS = ("acc", "acc_norm")
AIM_METRIC = "acc_norm"
KEEPS_DENSE = 0.95  # issue 27: searched >= 95% of dense accuracy
MODEL_NAMES = ("dense", "uniform", "flap_global", "searched")
MODELS = tuple(m for m in ZOO_MODELS if "moe" not in m)  # the reference model and the dense zoo (bench.zoo's table)


def row_of(model: str, evaluation: dict, seconds: float) -> dict:
    """One model's figures from its run's eval.json, with the aims checked on AIM_METRIC."""
    results = evaluation["results"][TASK]
    row: dict = {"model": model, "samples": evaluation["samples"].get(TASK), "seconds": round(seconds, 1)}
    for metric in METRICS:
        for name in MODEL_NAMES:
            row[f"{name}_{metric}"] = results[metric][name]["value"]
            row[f"{name}_{metric}_stderr"] = results[metric][name]["stderr"]
    searched, uniform, dense = (row[f"{n}_{AIM_METRIC}"] for n in ("searched", "uniform", "dense"))
    stderr = max(row[f"searched_{AIM_METRIC}_stderr"], row[f"uniform_{AIM_METRIC}_stderr"])
    row["searched_vs_dense"] = searched / dense
    row["searched_minus_uniform"] = searched - uniform
    row["keeps_95_of_dense"] = searched / dense >= KEEPS_DENSE
    row["beats_uniform_by_stderr"] = searched - uniform > stderr
    return row


def measure(model: str, keep: float, trials: int | None, limit: int | None) -> dict:
    from search.app.run import run

    cfg = run_config(model, keep, {}, trials)
    cfg.eval = EvalConfig(tasks=[TASK], limit=limit, batch_size=32)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="strata-eval-") as tmp:
        run(cfg, Path(tmp))
        evaluation = json.loads((Path(tmp) / "eval.json").read_text())
    row = row_of(model, evaluation, time.perf_counter() - start)
    log.warning("%s: acc_norm dense %.3f, uniform %.3f, flap_global %.3f, searched %.3f (%.0f s)", model,
                row["dense_acc_norm"], row["uniform_acc_norm"], row["flap_global_acc_norm"], row["searched_acc_norm"],
                row["seconds"])  # fmt: skip
    return row


def table(rows: list[dict]) -> str:
    cell = lambda r, n, m: f"{r[f'{n}_{m}']:.3f} ± {r[f'{n}_{m}_stderr']:.3f}"  # noqa: E731
    header = ["model", "metric", *MODEL_NAMES, "searched/dense", ">= 95% dense", "> uniform + stderr"]
    body = []
    for r in rows:
        for metric in METRICS:
            aims = [f"{r['searched_vs_dense']:.3f}", r["keeps_95_of_dense"], r["beats_uniform_by_stderr"]]
            body.append([r["model"], metric, *(cell(r, n, metric) for n in MODEL_NAMES),
                         *(aims if metric == AIM_METRIC else ["", "", ""])])  # fmt: skip
    return markdown_table(header, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reference model, 48 trials, 200 documents")
    parser.add_argument("--models", nargs="+", default=None, choices=MODELS)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--limit", type=int, default=None, help="documents of the task (default: all)")
    parser.add_argument("--trials", type=int, default=None, help="search trials (default 200; --quick 48)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (quality, not timing)")
    parser.add_argument("--name", default="eval", help="results file bench/results/<name>.json")
    args = parser.parse_args(argv)
    setup(args.threads)
    models = args.models or (["default"] if args.quick else list(MODELS))
    trials, limit = (args.trials or 48, args.limit or 200) if args.quick else (args.trials, args.limit)
    config = {"models": models, "keep": args.keep, "task": TASK, "limit": limit, "trials": trials or 200,
              "aim_metric": AIM_METRIC, "keeps_dense": KEEPS_DENSE}  # fmt: skip
    rows = []
    for model in models:
        rows.append(measure(model, args.keep, trials, limit))
        path = write_result(args.name, args.quick, {"config": config, "rows": rows})  # after each: a kill keeps it
    return print_result(table(rows), path)


if __name__ == "__main__":
    sys.exit(main())
