"""Real sizes: the supernet, one candidate's scoring and the search on random models in real layouts.

    python -m bench.scale --device cuda                  # Llama-3.1-8B and Qwen2.5-7B layouts, bf16, 32/28 layers
    python -m bench.scale --device cpu --layouts 1b      # TinyLlama-1.1B's layout on the CPU
    python -m bench.scale --quick                        # the 1B layout cut to 2 layers (2-core CPU, minutes)
    python -m bench.scale --cpu-full                     # the 1.1B layout end to end on the CPU, streamed and not
                                                         # (bench/scale_cpu.py -> bench/results/scale-cpu.json)

Per layout (a random Llama of its shapes, weights N(0, 0.02), bf16 on a GPU and float32 on the CPU):

1. supernet build time per criterion+compensation (``--setups``) at the default calibration (32 x 256
   tokens; ``--long`` adds 128 x 2048), peak GPU memory over the model's bytes (``max_memory_allocated``)
   and peak host memory (ru_maxrss);
2. precision of ``supernet.solve_dtype=float32`` against float64 on the same device: Kendall tau of each
   module's ranking, and the relative error of the refit columns of the modules whose ranking agrees;
3. one candidate's KL scoring (a level-switch child of the uniform allocation, as the search proposes
   it) against a bare forward of its materialised model, on 2048 and 8192 tokens;
4. a ``--trials`` search (evolution, KL, the default stages) and its projection to 1000 trials;
5. with ``--layers`` below the layout's depth, the build and search figures projected to the full depth
   (each layer costs the same: per-layer seconds x layers); on a GPU, 70B projected from the 8B layout's
   per-layer figures (:func:`headline`).

Writes ``bench/results/scale.json`` (``scale-quick.json``), with for the 8B layout on a GPU the keys
``build_seconds_8b``, ``peak_gpu_mem_vs_model_bytes_8b``, ``scoring_cost_vs_forward_8b`` and
``search_1000_trials_seconds_8b``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys

import torch

from bench.common import SIZES, LlamaSpec, markdown_table, peak_rss_bytes, random_llama, setup, timed, write_result

log = logging.getLogger("bench.scale")
KEEP = 0.5
LAYOUTS: dict[str, LlamaSpec] = {  # config.json of meta-llama/Llama-3.1-8B and Qwen/Qwen2.5-7B (Llama blocks)
    "llama-3.1-8b": LlamaSpec(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256,
                              head_dim=128),
    "qwen2.5-7b": LlamaSpec(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064,
                            head_dim=128),
    "1b": SIZES["1b"],
}  # fmt: skip
KEYS_8B = "llama-3.1-8b"
LAYOUT_70B = LlamaSpec(hidden=8192, layers=80, heads=64, kv_heads=8, intermediate=28672, vocab=128256, head_dim=128)


def load(spec: LlamaSpec, args):
    from supernet.io.loading import load_model

    dtype = "bfloat16" if args.device.startswith("cuda") else "float32"
    path = random_llama(spec, dtype="bfloat16")
    return load_model(path, dtype=dtype, device=args.device)


def build(model, adapter, tokens, cfg):
    from supernet.space.grids import supernet_grid
    from supernet.variants.build import build_supernet

    grid = supernet_grid(adapter, KEEP, cfg)
    return build_supernet(model, adapter, tokens, cfg, grid, use_cache=False, progress=False)


def builds(model, adapter, tokens, args, model_bytes: int) -> list[dict]:
    from supernet.variants.config import SupernetConfig

    calibrations = {"default": (32, 256), **({"long": (128, 2048)} if args.long else {})}
    rows = []
    for setup_name in args.setups:
        criterion, compensation = setup_name.split("+")
        for calib_name, (n, length) in calibrations.items():
            calib = tokens[:n, :length]
            if args.device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() if args.device.startswith("cuda") else 0
            cfg = SupernetConfig(criterion=criterion, compensation=compensation)
            seconds = timed(lambda c=cfg, t=calib: build(model, adapter, t, c), args.device)
            peak_gpu = torch.cuda.max_memory_allocated() - base if args.device.startswith("cuda") else None
            vs_model = None if peak_gpu is None else (peak_gpu + model_bytes) / model_bytes
            rows.append({"setup": setup_name, "calibration": calib_name, "tokens": int(calib.numel()),
                         "build_s": seconds, "build_s_per_layer": seconds / adapter.geometry.num_layers,
                         "peak_gpu_extra_bytes": peak_gpu,
                         "peak_gpu_vs_model_bytes": vs_model,
                         "peak_host_bytes": peak_rss_bytes()})  # fmt: skip
            print(f"  build {setup_name} ({calib_name}): {seconds:.1f} s", file=sys.stderr, flush=True)
    return rows


def precision(model, adapter, tokens) -> dict:
    """float32 solves against float64 on the same device (obs + refit_intercept, the default)."""
    from scipy.stats import kendalltau

    from supernet.variants.config import SupernetConfig

    calib = tokens[:32, :256]
    nets = {d: build(model, adapter, calib, SupernetConfig(solve_dtype=d, store_dtype="float32"))
            for d in ("float64", "float32")}  # fmt: skip
    taus, errors = [], []
    for key, exact in nets["float64"].rankings.items():
        fast = nets["float32"].rankings[key]
        taus.append(float(kendalltau(torch.argsort(exact).numpy(), torch.argsort(fast).numpy()).statistic))
        if torch.equal(exact, fast):
            for (layer, kind, level), weight in nets["float64"].weights.items():
                if (layer, kind) == key:
                    other = nets["float32"].weights[layer, kind, level]
                    errors.append(float(torch.linalg.norm(other - weight) / torch.linalg.norm(weight)))
    return {"tau_min": min(taus), "tau_median": statistics.median(taus), "modules": len(taus),
            "rankings_equal": sum(t == 1.0 for t in taus), "refit_rel_error_max": max(errors, default=None),
            "refit_rel_error_median": statistics.median(errors) if errors else None}  # fmt: skip


def reference_precision(args) -> dict:
    """:func:`precision` on the built-in reference model, on calibration windows of its own corpus."""
    from bench.common import REFERENCE
    from supernet.io.data import load_texts
    from supernet.io.loading import load_model
    from supernet.io.windows import pack_tokens

    model, tokenizer, adapter = load_model(REFERENCE, device=args.device)
    tokens = pack_tokens(tokenizer, load_texts("builtin", split="train"), seq_len=256, num_sequences=32, seed=0)
    return precision(model, adapter, tokens)


def scoring(model, adapter, tokens, args) -> list[dict]:
    """One child of the uniform allocation: switch + KL score, against a bare forward of its materialised model."""
    import numpy as np

    from proxies import as_batches
    from proxies.kl import KLProxy
    from search.mutation import level_switch
    from supernet.io.export import materialize
    from supernet.variants.config import SupernetConfig
    from supernet.variants.switch import Switcher

    cfg = SupernetConfig(criterion="flap", compensation="bias")
    net = build(model, adapter, tokens[:32, :256], cfg)
    switcher = Switcher(model, adapter)
    child = level_switch(np.random.default_rng(0), list(net.grid.target), net.grid)
    rows = []
    for total in (2048, 8192):
        batches = as_batches(tokens[: max(1, total // 2048), :2048].to(args.device), 1)
        proxy = KLProxy(switcher, reuse_bytes=0)
        switcher.apply(dict.fromkeys(switcher.current))
        proxy.prepare(model, batches)
        scores = []
        for _ in range(args.repeats):
            net.apply(switcher, list(net.grid.target))
            seconds = timed(lambda b=batches, p=proxy: (net.apply(switcher, child), p.score(model, b)), args.device)
            scores.append(seconds)
        pruned = materialize(model, switcher.shapes())
        with torch.no_grad():
            pruned(input_ids=batches[0][:, :16], use_cache=False)
            forward = lambda m=pruned, b=batches: [m(input_ids=x, use_cache=False).logits for x in b]  # noqa: E731
            bare = [timed(forward, args.device) for _ in range(args.repeats)]
        del pruned
        switcher.apply(dict.fromkeys(switcher.current))
        rows.append({"tokens": total, "score_s": statistics.median(scores), "bare_s": statistics.median(bare),
                     "score_vs_bare": statistics.median(scores) / statistics.median(bare)})  # fmt: skip
        print(f"  scoring {total} tokens: {rows[-1]['score_vs_bare']:.3f} x bare", file=sys.stderr, flush=True)
    return rows


def search(model, adapter, tokens, args) -> dict:
    from bench.search import searched
    from search.driver import SearchConfig
    from supernet.variants.config import SupernetConfig
    from supernet.variants.switch import Switcher

    cfg = SupernetConfig(criterion="flap", compensation="bias")
    net = build(model, adapter, tokens[:32, :256], cfg)
    scfg = SearchConfig(trials=args.trials)
    windows = tokens[32 : 32 + max(scfg.stage_tokens) // 256, :256].to(args.device)
    _, figures = searched(model, Switcher(model, adapter), net, net.grid, windows, scfg, KEEP, seed=0)
    figures["seconds_per_trial"] = figures["seconds"] / figures["trials"]
    figures["projected_1000_trials_s"] = figures["seconds_per_trial"] * 1000
    print(f"  search: {figures['trials']} trials in {figures['seconds']:.1f} s", file=sys.stderr, flush=True)
    return {k: v for k, v in figures.items() if k != "best_curve"}


def bench_layout(name: str, args) -> dict:
    spec = LAYOUTS[name]
    if args.layers:
        spec = dataclasses.replace(spec, layers=min(args.layers, spec.layers))
    print(f"== {name} ({spec.layers} of {LAYOUTS[name].layers} layers) on {args.device}", file=sys.stderr, flush=True)
    model, _, adapter = load(spec, args)
    model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    tokens = torch.randint(0, adapter.geometry.vocab, (160, 2048), generator=torch.Generator().manual_seed(0))
    scale = LAYOUTS[name].layers / spec.layers  # per-layer figures to the full depth
    out = {"layout": name, "layers": spec.layers, "full_layers": LAYOUTS[name].layers,
           "params": sum(p.numel() for p in model.parameters()), "model_bytes": model_bytes,
           "builds": builds(model, adapter, tokens, args, model_bytes)}  # fmt: skip
    for row in out["builds"]:
        row["build_s_full_depth"] = row["build_s"] * scale
    if not args.skip_precision:
        out["precision"] = precision(model, adapter, tokens)
    out["scoring"] = scoring(model, adapter, tokens, args)
    out["search"] = search(model, adapter, tokens, args)
    out["search"]["projected_1000_trials_s_full_depth"] = out["search"]["projected_1000_trials_s"] * scale
    return out


def headline(results: list[dict], device: str) -> dict:
    """The summary keys of the 8B layout on a GPU, and 70B projected from its per-layer figures.

    70B (Llama-3.1-70B: 80 layers, hidden 8192, MLP 28672): a layer's build is bounded by OBS on the MLP,
    O(width^3), so its build time is the 8B layer's x (28672 / 14336)^3 (an upper bound: attention and
    the Gram grow slower); a trial costs forward FLOPs, the 8B trial x the ratio of block parameters."""
    row = next((r for r in results if r["layout"] == KEYS_8B), None)
    if row is None or not device.startswith("cuda"):
        return {}
    default = next((b for b in row["builds"] if b["calibration"] == "default" and b["setup"] == "obs+refit_intercept"),
                   None)  # fmt: skip
    if default is None:  # the default supernet was not among --setups
        return {}
    per_layer = default["build_s"] / row["layers"]
    per_trial = row["search"]["projected_1000_trials_s_full_depth"] / 1000
    big, small = LAYOUT_70B, LAYOUTS[KEYS_8B]
    block_params = lambda spec: spec.params() - spec.vocab * spec.hidden * (1 if spec.tied else 2)  # noqa: E731
    trial_ratio = block_params(big) / block_params(small)
    return {"build_seconds_8b": default["build_s_full_depth"],
            "peak_gpu_mem_vs_model_bytes_8b": default["peak_gpu_vs_model_bytes"],
            "scoring_cost_vs_forward_8b": next(s["score_vs_bare"] for s in row["scoring"] if s["tokens"] == 2048),
            "search_1000_trials_seconds_8b": row["search"]["projected_1000_trials_s_full_depth"],
            "build_seconds_70b_projected": per_layer * big.layers * (big.intermediate / small.intermediate) ** 3,
            "search_1000_trials_seconds_70b_projected": 1000 * per_trial * trial_ratio}  # fmt: skip


def table(results: list[dict]) -> str:
    builds = [[r["layout"], f"{r['layers']}/{r['full_layers']}", b["setup"], b["calibration"],
               f"{b['build_s']:.1f} ({b['build_s_full_depth']:.0f})",
               "-" if b["peak_gpu_vs_model_bytes"] is None else f"{b['peak_gpu_vs_model_bytes']:.3f}",
               f"{b['peak_host_bytes'] / 2**30:.2f}"] for r in results for b in r["builds"]]  # fmt: skip
    rest = []
    for r in results:
        score, p, found = {x["tokens"]: x["score_vs_bare"] for x in r["scoring"]}, r.get("precision", {}), r["search"]
        err = p.get("refit_rel_error_max")
        rest.append([r["layout"], f"{score[2048]:.3f}", f"{score[8192]:.3f}", found["trials"],
                     f"{found['seconds_per_trial']:.2f}", f"{found['projected_1000_trials_s_full_depth']:.0f}",
                     f"{p.get('tau_min', float('nan')):.4f}", "-" if err is None else f"{err:.2e}"])  # fmt: skip
    return "\n\n".join([
        markdown_table(["layout", "layers", "setup", "calibration", "build s (full depth)", "peak GPU / model bytes",
                        "peak host GiB"], builds),
        markdown_table(["layout", "score/bare 2k", "score/bare 8k", "search trials", "s/trial",
                        "1000 trials s (full depth)", "float32 tau min", "float32 refit rel. err. max"], rest),
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=None)
    parser.add_argument("--layers", type=int, default=None, help="cut each layout to this many layers")
    parser.add_argument("--setups", nargs="+", default=["obs+refit_intercept", "flap+bias"])
    parser.add_argument("--long", action="store_true", help="also calibrate on 128 x 2048 tokens")
    parser.add_argument("--trials", type=int, default=None, help="search trials (200 on a GPU, 16 on the CPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-precision", action="store_true", help="no float32 build per layout (2 more builds)")
    parser.add_argument("--quick", action="store_true", help="the 1B layout cut to 2 layers, 16 trials")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument(
        "--cpu-full",
        action="store_true",
        help="the 1.1B layout end to end on the CPU, streamed "
        "and unstreamed, each stage in its own process (bench/scale_cpu.py; --layers cuts it)",
    )
    parser.add_argument(
        "--depth-models",
        action="store_true",
        help="--cpu-full: the depth series from separate "
        "4-, 8- and 16-layer models (28 more layers) instead of the 22-layer build's layer starts",
    )
    parser.add_argument("--work", default=None, help="--cpu-full: folder for its temporary files (default: /tmp)")
    args = parser.parse_args(argv)
    if args.cpu_full:
        return cpu_full_main(args)
    gpu = args.device.startswith("cuda")
    args.layouts = args.layouts or (["llama-3.1-8b", "qwen2.5-7b"] if gpu else ["1b"])
    args.trials = args.trials or (200 if gpu else 16)
    if args.quick:
        args.layers = args.layers or 2
    setup(args.threads or torch.get_num_threads())
    results = [bench_layout(name, args) for name in args.layouts]
    reference = reference_precision(args)  # 5M parameters: seconds
    config = {k: v for k, v in vars(args).items()}
    write_result("scale", args.quick, {"config": config, "layouts": results, "precision_reference": reference,
                                       **headline(results, args.device)})  # fmt: skip
    print(table(results))
    print(f"\nfloat32 vs float64 solves on the reference model: tau min {reference['tau_min']:.4f}, "
          f"refit relative error max {reference['refit_rel_error_max']:.2e}")  # fmt: skip
    return 0


def cpu_full_main(args) -> int:
    """``--cpu-full``: bench/results/scale-cpu.json (``scale-cpu-quick.json`` for a cut model) and its table."""
    from bench.scale_cpu import cpu_full, table_cpu

    setup(args.threads or torch.get_num_threads())
    result = cpu_full(args)
    write_result("scale-cpu", bool(args.layers), {"config": dict(vars(args)), **result})
    print(table_cpu(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
