"""Benchmark of the search on the reference model (issue 5).

    python bench/search.py [--quick] [--model default|tiny] [--device cpu|cuda]

1. For keep 0.7 and 0.5, on one supernet (same criterion and compensation): held-out perplexity of the
   searched allocation (evolution, multi-stage KL selection) against ``uniform`` and ``flap_global``;
   trials, forward tokens and seconds to the result.
2. At keep 0.5, the evolutionary sampler against TPE, CMA-ES, NSGA-II and random at equal evaluations
   (one stage, every trial scored on the same tokens): best KL after each evaluation, and how many
   evaluations the evolution needs to reach TPE's final best.
3. At keep 0.5, through the run's own search stage (search/app/pipeline.py), side by side at equal trials:
   plain evolution (lambda 16); coarse-to-fine (3 iterations of a third of the trials each, Týr);
   evolution with lambda 32 prescreened by a zero-shot proxy down to 16 before the KL stages
   (``search.prescreen``): each generation's KL stages cost what the plain one's do, and equal trials
   mean half the generations, so it shows what quality the prescreen keeps at half the KL evaluations.
Writes ``bench/results/search.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import optuna
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.supernet import reference_dir  # noqa: E402
from proxies.config import ProxyConfig  # noqa: E402
from search.driver import Search, SearchConfig, enqueue_warm_starts, make_sampler  # noqa: E402
from search.evolution import best_complete  # noqa: E402
from search.fitness import Evaluator, stage_windows  # noqa: E402
from supernet.io.data import load_texts  # noqa: E402
from supernet.io.files import write_json  # noqa: E402
from supernet.io.loading import load_model  # noqa: E402
from supernet.io.perplexity import perplexity  # noqa: E402
from supernet.io.windows import pack_tokens  # noqa: E402
from supernet.space.allocators import allocate  # noqa: E402
from supernet.space.grids import supernet_grid  # noqa: E402
from supernet.variants.build import build_supernet  # noqa: E402
from supernet.variants.config import SupernetConfig  # noqa: E402
from supernet.variants.switch import Switcher  # noqa: E402

log = logging.getLogger("bench.search")
COMPARED = ("evo", "tpe", "cmaes", "nsga2", "random")


def held_out_ppl(model, switcher, net, levels, held_out) -> float:
    net.apply(switcher, levels)
    return perplexity(model, held_out, batch_size=8, progress=False)


def searched(model, switcher, net, grid, calib, cfg: SearchConfig, keep: float, seed: int) -> tuple[list[int], dict]:
    """Run one search; returns the best levels and its cost figures."""
    start = time.perf_counter()
    evaluator = Evaluator(model, switcher, net, ProxyConfig(name="kl"), stage_windows(calib, cfg.stage_tokens))
    study = optuna.create_study(sampler=make_sampler(cfg, grid, seed))
    starts = {name: allocate(name, net, grid, keep) for name in ("uniform", "flap_global", "depth_linear")}
    enqueue_warm_starts(study, grid, starts)
    Search(cfg, study, grid, evaluator, progress=False).run()
    curve, best = [], float("inf")
    for trial in study.get_trials():
        if trial.value is not None:
            best = min(best, trial.value)
        curve.append(best)
    return best_complete(study, grid), {
        "trials": len(study.get_trials()),
        "evaluations": evaluator.evaluations,
        "forward_tokens": evaluator.forward_tokens,
        "seconds": time.perf_counter() - start,
        "best_kl": best,
        "best_curve": curve,
    }


def variants(model, adapter, switcher, net, grid, calib, held_out, *, keep, trials, stages, prescreen) -> dict:
    """Plain evolution vs coarse-to-fine vs prescreened offspring, each through ``run_search``."""
    import tempfile

    from search.app.config import RunConfig
    from search.app.pipeline import run_search
    from supernet.io.data import DataConfig
    from supernet.space.budget import BudgetConfig

    plain = {"sampler": "evo", "offspring": 16, "stage_tokens": stages, "survivors": [4, 2, 1]}
    settings = {
        "evo": {**plain, "trials": trials},
        "evo_coarse_to_fine_3": {**plain, "trials": trials // 3, "iterations": 3},
        f"evo_prescreen_{prescreen}": {
            **plain,
            "trials": trials,
            "offspring": 32,
            "prescreen": prescreen,
            "prescreen_keep": 16,
        },  # fmt: skip
    }
    starts = {name: allocate(name, net, grid, keep) for name in ("uniform", "flap_global", "depth_linear")}
    out = {}
    for name, fields in settings.items():
        cfg = RunConfig(data=DataConfig(batch_size=8), budget=BudgetConfig(keep=keep), supernet=net_config(net),
                        search=SearchConfig(**fields), progress=False)  # fmt: skip
        switcher.apply(dict.fromkeys(switcher.current))
        with tempfile.TemporaryDirectory() as run_dir:
            result = run_search(cfg, model=model, adapter=adapter, switcher=switcher, supernet=net, grid=grid,
                                calib=calib, warm_starts=starts, run_dir=Path(run_dir))  # fmt: skip
        ppl = held_out_ppl(model, switcher, result.supernet, result.levels, held_out)
        info = result.info
        out[name] = {"settings": fields, "ppl": ppl, "best_kl": info["best_fitness"], "trials": info["trials"],
                     "evaluations": info["evaluations"], "forward_tokens": info["forward_tokens"],
                     "seconds": info["seconds"], "iterations": info["iterations"]}  # fmt: skip
        print(f"  {name}: ppl {ppl:.3f}, kl {info['best_fitness']:.5f} in {info['seconds']:.1f} s", file=sys.stderr)
    return out


def net_config(net) -> SupernetConfig:
    return SupernetConfig(criterion=net.criterion, compensation=net.compensation)


def evaluations_to_reach(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, value in enumerate(curve) if value <= target), None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials, windows and tokens")
    parser.add_argument("--model", default="default", help="reference variant: default | tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--keeps", type=float, nargs="+", default=[0.7, 0.5])
    parser.add_argument("--trials", type=int, default=None, help="trials of the main search (default 1000)")
    parser.add_argument("--compare-trials", type=int, default=None, help="evaluations per sampler (default 300)")
    parser.add_argument("--compare-offspring", type=int, default=4, help="evolution's lambda in the comparison")
    parser.add_argument("--criterion", default="flap")
    parser.add_argument("--compensation", default="bias")
    parser.add_argument("--prescreen", default="trace_correlation", help="zero-shot proxy of the prescreen variant")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "search.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    torch.manual_seed(0)

    model_dir, variant = reference_dir(args.model)
    model, tokenizer, adapter = load_model(model_dir, device=args.device)
    seq_len = 128 if args.quick else 256
    calib_n, eval_n = (16, 32) if args.quick else (128, 128)
    trials = args.trials or (120 if args.quick else 1000)
    compare = args.compare_trials or (60 if args.quick else 300)
    stages = [512, 1024, 2048] if args.quick else [2048, 8192, 32768]
    calib = pack_tokens(tokenizer, load_texts("builtin", split="train"), seq_len=seq_len, num_sequences=calib_n, seed=0)
    held_out = pack_tokens(tokenizer, load_texts("builtin", split="eval"), seq_len=seq_len, num_sequences=eval_n,
                           seed=0).to(args.device)  # fmt: skip
    scfg = SupernetConfig(criterion=args.criterion, compensation=args.compensation)
    switcher = Switcher(model, adapter)
    results: dict = {
        "model": f"strata-reference-{variant}",
        "device": args.device,
        "supernet": {"criterion": args.criterion, "compensation": args.compensation},
        "calibration": {"sequences": calib_n, "seq_len": seq_len},
        "eval": {"windows": eval_n, "seq_len": seq_len},
        "dense_ppl": perplexity(model, held_out, progress=False),
        "runs": [],
    }
    for keep in args.keeps:
        switcher.apply(dict.fromkeys(switcher.current))
        grid = supernet_grid(adapter, keep, scfg)
        net = build_supernet(model, adapter, calib, scfg, grid, use_cache=False, progress=False)
        cfg = SearchConfig(sampler="evo", trials=trials, offspring=16, stage_tokens=stages, survivors=[4, 2, 1])
        best, cost = searched(model, switcher, net, grid, calib, cfg, keep, seed=0)
        ppl = {"search": held_out_ppl(model, switcher, net, best, held_out)}
        for name in ("uniform", "flap_global"):
            ppl[name] = held_out_ppl(model, switcher, net, allocate(name, net, grid, keep), held_out)
        row = {"keep": keep, "ppl": ppl, "search": {k: v for k, v in cost.items() if k != "best_curve"},
               "vs_uniform": ppl["search"] / ppl["uniform"], "vs_flap_global": ppl["search"] / ppl["flap_global"],
               "levels": best}  # fmt: skip
        results["runs"].append(row)
        print(f"keep {keep}: {json.dumps(row)}", file=sys.stderr, flush=True)
        if keep == 0.5:
            one_stage = [stages[-1]]
            curves = {}
            for sampler in COMPARED:
                cfg = SearchConfig(sampler=sampler, trials=compare, offspring=args.compare_offspring,
                                   stage_tokens=one_stage, survivors=[1])  # fmt: skip
                _, cost = searched(model, switcher, net, grid, calib, cfg, keep, seed=0)
                curves[sampler] = cost
                print(f"  {sampler}: best kl {cost['best_kl']:.5f} in {cost['seconds']:.1f} s", file=sys.stderr)
            tpe_final = curves["tpe"]["best_kl"]
            reach = evaluations_to_reach(curves["evo"]["best_curve"], tpe_final)
            results["variants"] = variants(model, adapter, switcher, net, grid, calib, held_out, keep=keep,
                                           trials=trials, stages=stages, prescreen=args.prescreen)  # fmt: skip
            results["samplers"] = {
                "evaluations": compare,
                "evo_offspring": args.compare_offspring,
                "tokens": one_stage[0],
                "best_kl": {s: c["best_kl"] for s, c in curves.items()},
                "curves": {s: c["best_curve"] for s, c in curves.items()},
                "evo_evals_to_tpe_final": reach,
                "evo_fraction_of_tpe_evals": None if reach is None else reach / compare,
            }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    print(table(results))
    return 0


def table(results: dict) -> str:
    lines = [f"dense held-out ppl {results['dense_ppl']:.3f} ({results['model']}, {results['device']})", "",
             "| keep | search ppl | uniform ppl | flap_global ppl | vs uniform | vs flap_global | trials | "
             "forward tokens | seconds |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results["runs"]:
        p, s = r["ppl"], r["search"]
        lines.append(f"| {r['keep']} | {p['search']:.3f} | {p['uniform']:.3f} | {p['flap_global']:.3f} | "
                     f"{r['vs_uniform']:.3f} | {r['vs_flap_global']:.3f} | {s['trials']} | {s['forward_tokens']} | "
                     f"{s['seconds']:.1f} |")  # fmt: skip
    if "samplers" in results:
        sm = results["samplers"]
        lines += ["", f"Samplers at keep 0.5, {sm['evaluations']} evaluations on {sm['tokens']} tokens each:", "",
                  "| sampler | best KL |", "|---|---|"]  # fmt: skip
        lines += [f"| {name} | {value:.5f} |" for name, value in sm["best_kl"].items()]
        lines.append(f"\nevolution reaches TPE's final KL after {sm['evo_evals_to_tpe_final']} evaluations "
                     f"({sm['evo_fraction_of_tpe_evals']} of TPE's)")  # fmt: skip
    if "variants" in results:
        lines += ["", "Search variants at keep 0.5 (run_search, equal trials):", "",
                  "| variant | held-out ppl | best KL | trials | KL evaluations | forward tokens | seconds |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for name, v in results["variants"].items():
            lines.append(f"| {name} | {v['ppl']:.3f} | {v['best_kl']:.5f} | {v['trials']} | {v['evaluations']} | "
                         f"{v['forward_tokens']} | {v['seconds']:.1f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
