"""Pruning quality on the zoo of trained models: the reference model and the ``zoo-*`` models of
:data:`supernet.io.reference.recipe.ZOO`, each in the layout of a real family.

    python -m bench.zoo [--quick] [--models default zoo-qwen2 ...] [--keeps 0.5 0.7] [--setups defaults ...]

For every model, the defaults at every keep and the other setups at the first keep, it runs the main
job itself (``search.app.run.run``, what bare ``strata`` runs: ``search=evo``, ``proxy=kl``, OBS + refit
with an intercept, fitness held apart from calibration) with the setup's overrides, into a temporary run
directory, and reads ``metrics.json``: dense, uniform (same supernet), flap_global (FLAP's own method,
supernet/space/flap.py) and searched held-out perplexity and parameters on the same windows (the built-in
eval split, 64 x 256 tokens), the ratios searched/dense, searched/uniform and searched/flap_global,
and the run's seconds.

Setups (:data:`SETUPS`): ``defaults``; ``fitness_on_calibration`` (candidates scored on the windows the
supernet was fitted on, ``search.fitness=calibration``); ``resample`` (early stages redraw their windows
every generation, ``search.resample=true``); ``head`` (query heads as attention units); ``frequency`` (a
mixture's experts ranked by how often the router picks them instead of REAP; its ``uniform`` row is
uniform frequency pruning, the defaults' is uniform REAP pruning, and ``moe`` in the output compares the
searched allocation with the better of the two); ``active_params`` (a mixture's expert channels as units,
``supernet.expert_unit=channel``, under ``budget.kind=active_params``: the parameters one token uses); ``both``
(a mixture's expert count and expert width per layer in one search, ``supernet.expert_unit=both``; its
``uniform`` row is uniform REAP pruning at the widest width the budget allows) and ``both_active`` (the same under
``budget.kind=active_params``, where the uniform row keeps every expert at a uniform width). ``--quick``: keep
0.5, the defaults, 48 trials. Writes ``bench/results/<--name>.json`` (default ``zoo.json``;
``zoo-quick.json``) and prints a markdown table.
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

from bench.common import markdown_table, setup, write_result  # noqa: E402
from search.app.config import RunConfig  # noqa: E402
from search.driver import SearchConfig  # noqa: E402
from supernet.io.data import DataConfig  # noqa: E402
from supernet.io.loading import ModelConfig  # noqa: E402
from supernet.io.reference.build import reference_model_dir  # noqa: E402
from supernet.io.reference.recipe import ZOO  # noqa: E402
from supernet.space.budget import BudgetConfig  # noqa: E402
from supernet.variants.config import SupernetConfig  # noqa: E402

log = logging.getLogger("bench.zoo")
MODELS = ("default", *ZOO)
SETUPS = {  # name -> overrides per config node
    "defaults": {},
    "fitness_on_calibration": {"search": {"fitness": "calibration"}},
    "resample": {"search": {"resample": True}},
    "head": {"supernet": {"attn_unit": "head"}},
    "frequency": {"supernet": {"expert_criterion": "frequency"}},  # a mixture's experts ranked by routing share
    # a mixture's expert channels under the parameters one token uses (its top-k experts)
    "active_params": {"supernet": {"expert_unit": "channel"}, "budget": {"kind": "active_params"}},
    # a mixture's experts and their width in one search, by parameters held and by parameters a token uses
    "both": {"supernet": {"expert_unit": "both"}},
    "both_active": {"supernet": {"expert_unit": "both"}, "budget": {"kind": "active_params"}},
}
MOE_AIM = 0.90  # issue 14: searched <= 0.90x the best uniform expert pruning (REAP or frequency)
TARGETS = {"vs_dense": 1.10, "vs_flap_global": 0.80}  # issue 12: searched <= 1.10x dense (aim), <= 0.80x FLAP


def run_config(model: str, keep: float, overrides: dict, trials: int | None) -> RunConfig:
    """The run of one zoo model: the built-in corpus (the zoo's training text) named on purpose."""
    search = dict(overrides.get("search", {}))
    if trials is not None:
        search["trials"] = trials
    path = None if model == "default" else str(reference_model_dir(model))
    return RunConfig(
        model=ModelConfig(path=path, reference="default"),
        data=DataConfig(source="builtin"),
        budget=BudgetConfig(keep=keep, **overrides.get("budget", {})),
        supernet=SupernetConfig(**overrides.get("supernet", {})),
        search=SearchConfig(**search),
        progress=False,
    )


def measure(model: str, keep: float, setup_name: str, trials: int | None) -> dict:
    from search.app.run import run

    cfg = run_config(model, keep, SETUPS[setup_name], trials)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="strata-zoo-") as tmp:
        metrics = run(cfg, Path(tmp))
    baselines = metrics["baselines"]
    row = {
        "model": model,
        "keep": keep,
        "setup": setup_name,
        "overrides": SETUPS[setup_name],
        "supernet": metrics["supernet"]["criterion"] + " + " + metrics["supernet"]["compensation"],
        "dense_ppl": metrics["dense"]["ppl"],
        "uniform_ppl": baselines["uniform"]["ppl"],
        "flap_global_ppl": baselines["flap_global"]["ppl"],
        "searched_ppl": metrics["pruned"]["ppl"],
        "dense_params": metrics["dense"]["params"],
        "uniform_params": baselines["uniform"]["params"],
        "flap_global_params": baselines["flap_global"]["params"],
        "searched_params": metrics["pruned"]["params"],
        "flap_global_approximated": baselines["flap_global"]["approximated"],
        "trials": metrics["search"]["trials"],
        "search_seconds": metrics["search"]["seconds"],
        "seconds": round(time.perf_counter() - start, 1),
    }
    row["vs_uniform"] = row["searched_ppl"] / row["uniform_ppl"]
    row["vs_flap_global"] = row["searched_ppl"] / row["flap_global_ppl"]
    row["vs_dense"] = row["searched_ppl"] / row["dense_ppl"]
    row["meets_targets"] = all(row[k] <= v for k, v in TARGETS.items())
    log.warning("%s keep %.1f %s: searched %.2f, uniform %.2f, flap_global %.2f, dense %.2f (%.0f s)", model, keep,
                setup_name, row["searched_ppl"], row["uniform_ppl"], row["flap_global_ppl"], row["dense_ppl"],
                row["seconds"])  # fmt: skip
    return row


def table(rows: list[dict]) -> str:
    header = ["model", "keep", "setup", "dense", "uniform", "flap_global", "searched", "/uniform", "/flap_global",
              "/dense", "s"]  # fmt: skip
    return markdown_table(header, [
        [r["model"], r["keep"], r["setup"], r["dense_ppl"], r["uniform_ppl"], r["flap_global_ppl"], r["searched_ppl"],
         f"{r['vs_uniform']:.3f}", f"{r['vs_flap_global']:.3f}", f"{r['vs_dense']:.3f}", f"{r['seconds']:.0f}"]
        for r in rows
    ])  # fmt: skip


def moe_rows(rows: list[dict]) -> list[dict]:
    """Per model and keep with both expert criteria measured: uniform by REAP and by frequency, FLAP-style
    global (REAP scores), searched, and searched over the better uniform (issue 14's aim: <= 0.90)."""
    out = []
    for r in rows:
        same = [f for f in rows if (f["model"], f["keep"]) == (r["model"], r["keep"])]
        freq = next((f for f in same if f["setup"] == "frequency"), None)
        if r["setup"] != "defaults" or freq is None:
            continue
        best = min(r["uniform_ppl"], freq["uniform_ppl"])
        ratio = r["searched_ppl"] / best
        row = {"model": r["model"], "keep": r["keep"], "dense_ppl": r["dense_ppl"],
               "uniform_reap_ppl": r["uniform_ppl"], "uniform_frequency_ppl": freq["uniform_ppl"],
               "flap_global_ppl": r["flap_global_ppl"], "searched_ppl": r["searched_ppl"],
               "vs_best_uniform": ratio, "meets_aim": ratio <= MOE_AIM}  # fmt: skip
        both = next((f for f in same if f["setup"] == "both"), None)
        if both is not None:  # experts and width in one search, against the same uniform expert pruning
            row |= {"searched_both_ppl": both["searched_ppl"], "both_vs_best_uniform": both["searched_ppl"] / best}
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="keep 0.5, the defaults, 48 trials")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--keeps", nargs="+", type=float, default=None)
    parser.add_argument("--setups", nargs="+", default=None, choices=list(SETUPS))
    parser.add_argument("--threads", type=int, default=2, help="torch threads (quality, not timing)")
    parser.add_argument("--name", default="zoo", help="results file bench/results/<name>.json")
    args = parser.parse_args(argv)
    setup(args.threads)
    keeps = args.keeps or ([0.5] if args.quick else [0.5, 0.7])
    setups = args.setups or (["defaults"] if args.quick else list(SETUPS))
    trials = 48 if args.quick else None
    # the defaults at every keep first, then the other setups at the first keep; every model in turn
    combos = [(k, "defaults") for k in keeps] + [(keeps[0], s) for s in setups if s != "defaults"]
    config = {"models": args.models, "keeps": keeps, "setups": {s: SETUPS[s] for s in setups},
              "trials": trials or SearchConfig().trials, "targets": TARGETS}  # fmt: skip
    rows = []
    for k, s in combos:
        for m in args.models:
            rows.append(measure(m, k, s, trials))
            result = {"config": config, "rows": rows, "moe": moe_rows(rows)}
            path = write_result(args.name, args.quick, result)  # after each: a kill keeps it
    print(table(rows))
    if moe := moe_rows(rows):
        print()
        header = ["model", "keep", "dense", "uniform REAP", "uniform frequency", "flap_global (REAP)", "searched",
                  "/best uniform"]  # fmt: skip
        print(markdown_table(header, [[m["model"], m["keep"], m["dense_ppl"], m["uniform_reap_ppl"],
                                       m["uniform_frequency_ppl"], m["flap_global_ppl"], m["searched_ppl"],
                                       f"{m['vs_best_uniform']:.3f}"] for m in moe]))  # fmt: skip
    print(f"\n{json.dumps({'written': str(path)})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
