"""Criterion x compensation x propagation on the zoo, with no search: which supernet the default run uses.

    python -m bench.criteria [--quick] [--models default zoo-qwen2 ...] [--keep 0.5]

For every model of the zoo (the reference model and :data:`supernet.io.reference.recipe.ZOO`) it loads the
model once, takes the run's calibration windows (the built-in train split, 32 x 256 tokens, seed 0) and
held-out windows (the eval split, 64 x 256), builds the supernet of every setup (criterion,
compensation, propagation; OBS only with the refits it assumes) at ``keep`` of the block parameters, and
measures the held-out perplexity of the uniform allocation and of FLAP's own global allocation with its
bias (:mod:`supernet.space.flap`, the same for every setup but the propagation of its statistics). The uniform
allocation isolates the supernet from the allocation: the best setup here is the default's supernet.
``--quick``: the reference model, propagation ``dense`` only. Writes ``bench/results/criteria.json``
(``criteria-quick.json``) and prints a markdown table (ppl / dense, per model).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import markdown_table, print_result, setup, write_result  # noqa: E402
from search.app.config import RunConfig  # noqa: E402
from supernet.io.data import DataConfig  # noqa: E402
from supernet.io.loading import ModelConfig  # noqa: E402
from supernet.io.reference.build import reference_model_dir  # noqa: E402
from supernet.io.reference.recipe import ZOO  # noqa: E402
from supernet.space.budget import BudgetConfig  # noqa: E402
from supernet.variants.config import SupernetConfig, supernet_pairs  # noqa: E402

log = logging.getLogger("bench.criteria")
MODELS = ("default", *ZOO)


def setups(propagations: list[str]) -> list[dict]:
    """Every valid (criterion, compensation) pair, under each propagation."""
    out = []
    for propagate in propagations:
        for criterion, compensation in supernet_pairs():
            out.append({"criterion": criterion, "compensation": compensation, "propagate": propagate})
    return out


def measure_model(model_name: str, keep: float, combos: list[dict]) -> list[dict]:
    from search.app.inputs import eval_tokens, train_windows
    from supernet.io.loading import load_model
    from supernet.io.perplexity import perplexity
    from supernet.space.allocators import allocate
    from supernet.space.budget import budget_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.flap_baseline import flap_baseline
    from supernet.variants.switch import Switcher

    path = None if model_name == "default" else str(reference_model_dir(model_name))
    cfg = RunConfig(model=ModelConfig(path=path), data=DataConfig(source="builtin"), budget=BudgetConfig(keep=keep),
                    progress=False)  # fmt: skip
    model, tokenizer, adapter = load_model(path or reference_model_dir("default"))
    held_out, calib = eval_tokens(cfg.data, tokenizer), train_windows(cfg.data, tokenizer, seed=cfg.seed)[0]
    dense = perplexity(model, held_out, batch_size=8, progress=False)
    switcher = Switcher(model, adapter)
    rows, flap = [], {}
    for combo in combos:
        start = time.perf_counter()
        scfg = SupernetConfig(**combo)
        grid = budget_grid(model, adapter, cfg.budget, scfg)
        switcher.apply(dict.fromkeys(switcher.current))
        net = build_supernet(model, adapter, calib, scfg, grid, use_cache=False, progress=False)
        net.apply(switcher, allocate("uniform", net, grid, keep))
        uniform = perplexity(model, held_out, batch_size=8, progress=False)
        if combo["propagate"] not in flap:  # FLAP's own method depends on the statistics' propagation only
            flap_baseline(net, switcher).install(switcher)
            flap[combo["propagate"]] = perplexity(model, held_out, batch_size=8, progress=False)
        row = {"model": model_name, "keep": keep, **combo, "dense_ppl": dense, "uniform_ppl": uniform,
               "flap_ppl": flap[combo["propagate"]], "seconds": round(time.perf_counter() - start, 1)}  # fmt: skip
        log.warning("%s %s+%s (%s): uniform %.2f (dense %.2f, FLAP %.2f)", model_name, combo["criterion"],
                    combo["compensation"], combo["propagate"], uniform, dense, row["flap_ppl"])  # fmt: skip
        rows.append(row)
    switcher.apply(dict.fromkeys(switcher.current))
    return rows


def table(rows: list[dict]) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    keys = list(dict.fromkeys((r["criterion"], r["compensation"], r["propagate"]) for r in rows))
    by = {(r["model"], r["criterion"], r["compensation"], r["propagate"]): r for r in rows}
    body = []
    for key in keys:
        cells = [by.get((m, *key)) for m in models]
        ratios = [c["uniform_ppl"] / c["dense_ppl"] for c in cells if c]
        mean = sum(ratios) / len(ratios) if ratios else float("nan")
        body.append([*key, *(f"{c['uniform_ppl'] / c['dense_ppl']:.3f}" if c else "" for c in cells), f"{mean:.3f}"])
    flap_rows = {(r["model"], r["propagate"]): r["flap_ppl"] / r["dense_ppl"] for r in rows}
    for propagate in dict.fromkeys(r["propagate"] for r in rows):
        cells = [flap_rows.get((m, propagate)) for m in models]
        ratios = [c for c in cells if c]
        body.append(["FLAP (own allocation)", "bias", propagate, *(f"{c:.3f}" if c else "" for c in cells),
                     f"{sum(ratios) / len(ratios):.3f}"])  # fmt: skip
    return markdown_table(["criterion", "compensation", "propagate", *models, "mean"], body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reference model, propagation dense only")
    parser.add_argument("--models", nargs="+", default=None, choices=MODELS)
    parser.add_argument("--keep", type=float, default=0.5)
    parser.add_argument("--propagate", nargs="+", default=None, choices=["dense", "expected"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (quality, not timing)")
    args = parser.parse_args(argv)
    setup(args.threads)
    models = args.models or (["default"] if args.quick else list(MODELS))
    propagations = args.propagate or (["dense"] if args.quick else ["dense", "expected"])
    combos = setups(propagations)
    config = {"models": models, "keep": args.keep, "setups": combos, "allocation": "uniform",
              "calibration": "builtin train split, 32 x 256 tokens",
              "eval": "builtin eval split, 64 x 256 tokens"}  # fmt: skip
    rows: list[dict] = []
    path = None
    for m in models:
        rows += measure_model(m, args.keep, combos)
        path = write_result("criteria", args.quick, {"config": config, "rows": rows})  # after each: a kill keeps it
    print("held-out ppl / dense, uniform allocation at keep", args.keep)
    return print_result(table(rows), path)


if __name__ == "__main__":
    sys.exit(main())
