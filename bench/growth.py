"""How supernet build time and search time per trial grow with depth and with tokens (issue 7.5).

    python -m bench.growth [--quick]

Random Llamas of fixed width (``WIDTH``: hidden 512, 8 heads in 4 GQA groups, 1408 MLP channels)
with 4, 8, 16 and 32 layers, float32, built in memory. For each: the supernet build (FLAP criterion,
bias compensation) on ``TOKENS`` calibration tokens, and a short evolutionary search (KL fitness on one
stage of ``TOKENS`` tokens, prefix reuse on), timed without its set-up (teacher logits). Then at 8
layers, the same two against the number of tokens (256 to 2048). Each figure is the median of
``--repeats`` runs. A least-squares line (``scipy.stats.linregress``) gives slope and r^2; the
exponent b of the log-log fit t ~ x^b says how close to linear the growth is (b = 1: linear).
Writes ``bench/results/growth.json``.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch

from bench.common import LlamaSpec, fit_line, setup, write_result

WIDTH = {"hidden": 512, "heads": 8, "kv_heads": 4, "intermediate": 1408, "vocab": 8192, "tied": True}
LAYERS = (4, 8, 16, 32)
TOKENS = (256, 512, 1024, 2048)
SEQ_LEN = 128
BASE_LAYERS, BASE_TOKENS = 8, 512


def make_model(layers: int):
    from transformers import LlamaForCausalLM

    from supernet.io.adapters import adapter_for

    torch.manual_seed(0)
    config = LlamaSpec(layers=layers, **WIDTH).config("float32")
    return LlamaForCausalLM(config).eval().requires_grad_(False), adapter_for(config)


def build_seconds(model, adapter, tokens: torch.Tensor) -> tuple[float, object, object]:
    from supernet.space.grids import supernet_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.config import SupernetConfig

    cfg = SupernetConfig(criterion="flap", compensation="bias")
    grid = supernet_grid(adapter, 0.5, cfg)
    net = build_supernet(model, adapter, tokens, cfg, grid, use_cache=False, progress=False)
    return net.build_seconds, net, grid


def seconds_per_trial(model, adapter, net, grid, tokens: torch.Tensor, trials: int) -> float:
    """Wall time of ``Search.run`` over its finished trials (the evaluator's set-up excluded)."""
    import optuna

    from proxies.config import ProxyConfig
    from search.driver import Search, SearchConfig, enqueue_warm_starts, make_sampler
    from search.fitness import Evaluator
    from supernet.space.allocators import allocate
    from supernet.variants.switch import Switcher

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    switcher = Switcher(model, adapter)
    cfg = SearchConfig(sampler="evo", trials=trials, offspring=8, stage_tokens=[tokens.numel()], survivors=[1])
    evaluator = Evaluator(model, switcher, net, ProxyConfig(name="kl"), [tokens])
    study = optuna.create_study(sampler=make_sampler(cfg, grid, 0))
    enqueue_warm_starts(study, grid, {name: allocate(name, net, grid, 0.5) for name in ("uniform", "flap_global")})
    start = time.perf_counter()
    Search(cfg, study, grid, evaluator, progress=False).run()
    elapsed = time.perf_counter() - start
    switcher.apply(dict.fromkeys(switcher.current))
    return elapsed / len(study.get_trials())


def point(layers: int, tokens: int, args) -> dict:
    model, adapter = make_model(layers)
    ids = torch.randint(0, WIDTH["vocab"], (tokens // SEQ_LEN, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    builds, trials = [], []
    for _ in range(args.repeats):
        seconds, net, grid = build_seconds(model, adapter, ids)
        builds.append(seconds)
        trials.append(seconds_per_trial(model, adapter, net, grid, ids, args.trials))
    row = {"layers": layers, "tokens": tokens, "params": sum(p.numel() for p in model.parameters()),
           "build_s": statistics.median(builds), "trial_s": statistics.median(trials),
           "samples": {"build_s": builds, "trial_s": trials}}  # fmt: skip
    print(f"layers {layers} tokens {tokens}: build {row['build_s']:.2f} s, trial {row['trial_s']:.3f} s",
          file=sys.stderr, flush=True)  # fmt: skip
    return row


def growth(rows: list[dict], x: str) -> dict:
    """Line and log-log exponent of build and trial seconds against ``x``."""
    xs = [r[x] for r in rows]
    out = {}
    for y in ("build_s", "trial_s"):
        ys = [r[y] for r in rows]
        line = fit_line(xs, ys)
        exponent = fit_line([math.log(v) for v in xs], [math.log(v) for v in ys])["slope"]
        out[y] = {**line, "loglog_exponent": exponent}
    return out


def table(results: dict) -> str:
    lines = ["| against | y | slope | intercept s | r^2 | log-log exponent |", "|---|---|---|---|---|---|"]
    for x, unit in (("layers", "s / layer"), ("tokens", "s / token")):
        for y, fit in results["fits"][x].items():
            lines.append(f"| {x} | {y} | {fit['slope']:.4g} {unit} | {fit['intercept']:.3f} | {fit['r2']:.4f} | "
                         f"{fit['loglog_exponent']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and trials")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see bench.common.setup)")
    args = parser.parse_args(argv)
    setup(args.threads)
    args.repeats = 2 if args.quick else 3
    args.trials = 10 if args.quick else 20
    by_layers = [point(layers, BASE_TOKENS, args) for layers in LAYERS]
    by_tokens = [point(BASE_LAYERS, tokens, args) for tokens in TOKENS]
    results = {"config": {"width": WIDTH, "seq_len": SEQ_LEN, "base_layers": BASE_LAYERS, "base_tokens": BASE_TOKENS,
                          "repeats": args.repeats, "trials": args.trials, "threads": args.threads,
                          "supernet": "flap + bias", "search": "evo, 8 offspring, one KL stage"},
               "by_layers": by_layers, "by_tokens": by_tokens,
               "fits": {"layers": growth(by_layers, "layers"), "tokens": growth(by_tokens, "tokens")}}  # fmt: skip
    write_result("growth", args.quick, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
