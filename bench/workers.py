"""Benchmark of the Ray workers (issue 6): candidates scored per second with 1 and 2 workers.

    python bench/workers.py [--quick] [--model default|tiny] [--device cpu|cuda] [--tokens 2048]

On the reference model (KL on one stage of ``--tokens`` calibration tokens, the first stage of
bench/search.py), the same batches of fresh on-budget candidates (level-switch walks from the
uniform allocation, a generation of ``--batch``) are scored, side by side in one run and
round-robin over ``--repeats`` repeats, by:

- the in-process evaluator (search/fitness.py) with torch at 1 thread and at every thread;
- the Ray pool (search/workers.py) with 1 and 2 actors, ``ray.threads_per_worker`` threads each.

Reported: the median candidates per second of each, the pool's start-up (actors loading the model
and preparing the proxy), its overhead per candidate against in-process scoring at the same thread
count and the round trip of a no-op actor call, the load average, and whether every configuration
scored the same values bit for bit. Writes ``bench/results/workers.json`` and prints a markdown
table. The figures depend on how many cores are free: say what else ran.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.supernet import reference_dir  # noqa: E402
from proxies.config import ProxyConfig  # noqa: E402
from search.actor import EvaluatorSpec, tensors_to_bytes  # noqa: E402
from search.fitness import Evaluator, stage_windows  # noqa: E402
from search.mutation import level_switch  # noqa: E402
from search.workers import EvaluatorPool, RayConfig  # noqa: E402
from supernet.io.data import load_texts  # noqa: E402
from supernet.io.files import write_json  # noqa: E402
from supernet.io.loading import load_model  # noqa: E402
from supernet.io.windows import pack_tokens  # noqa: E402
from supernet.space.grids import supernet_grid  # noqa: E402
from supernet.variants.build import build_supernet  # noqa: E402
from supernet.variants.config import SupernetConfig  # noqa: E402
from supernet.variants.switch import Switcher  # noqa: E402

log = logging.getLogger("bench.workers")


def candidates(grid, count: int, seed: int) -> list[list[int]]:
    """``count`` distinct on-budget allocations: level-switch walks of 1 to 8 steps from the target."""
    rng = np.random.default_rng(seed)
    out: dict[tuple[int, ...], None] = {}
    while len(out) < count:
        levels = list(grid.target)
        for _ in range(int(rng.integers(1, 9))):
            levels = level_switch(rng, levels, grid)
        if levels != list(grid.target):
            out[tuple(levels)] = None
    return [list(levels) for levels in out]


def ray_call_ms(pool: EvaluatorPool, calls: int = 50) -> float:
    """Median round trip of a no-op actor call (the supernet check every call makes, nothing scored)."""
    import ray

    actor, times = pool.actors[0], []
    for _ in range(calls):
        began = time.perf_counter()
        ray.get(actor.ready.remote(pool.supernet))
        times.append(1000 * (time.perf_counter() - began))
    return statistics.median(times)


def machine() -> dict:
    import ray
    import transformers

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "load_average_at_start": os.getloadavg(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "ray": ray.__version__,
        },  # fmt: skip
        "note": "a shared machine: other jobs may have run at the same time",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny model, fewer tokens and repeats")
    parser.add_argument("--model", default=None, help="reference variant: default | tiny")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tokens", type=int, default=None, help="calibration tokens per candidate (default 2048)")
    parser.add_argument("--batch", type=int, default=16, help="candidates per batch (a generation's offspring)")
    parser.add_argument("--repeats", type=int, default=None, help="batches per configuration (default 5)")
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "workers.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    model_variant = args.model or ("tiny" if args.quick else "default")
    tokens = args.tokens or (256 if args.quick else 2048)
    repeats = args.repeats or (2 if args.quick else 5)
    import ray

    start = machine()
    model_dir, variant = reference_dir(model_variant)
    model, tokenizer, adapter = load_model(model_dir, device=args.device)
    seq_len = 64 if args.quick else 256
    calib = pack_tokens(tokenizer, load_texts("builtin", split="train"), seq_len=seq_len,
                        num_sequences=max(1, tokens // seq_len), seed=0)  # fmt: skip
    scfg = SupernetConfig(criterion="flap", compensation="bias")
    keep = 0.5
    grid = supernet_grid(adapter, keep, scfg)
    net = build_supernet(model, adapter, calib, scfg, grid, use_cache=False, progress=False)
    proxy = ProxyConfig(name="kl")
    stage = [tokens]
    windows = stage_windows(calib, stage)
    configs = ["in_process_1_thread", f"in_process_{torch.get_num_threads()}_threads", "ray_1_worker", "ray_2_workers"]
    threads = {configs[0]: 1, configs[1]: torch.get_num_threads()}
    pool_cpus = max(3 * args.threads_per_worker, os.cpu_count() or 1)  # logical: the pools take turns
    ray.init(num_cpus=pool_cpus, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    spec = EvaluatorSpec(model_dir=str(Path(model_dir).resolve()), dtype="float32", device=args.device, proxy=proxy,
                         stage_tokens=stage, batch_size=8, prescreen=None, attn_unit="group", expert_unit="expert",
                         calib=tensors_to_bytes({"calib": calib}))  # fmt: skip
    rcfg = RayConfig(threads_per_worker=args.threads_per_worker)
    scorers, startup = {}, {}
    for name, workers in ((configs[2], 1), (configs[3], 2)):
        began = time.perf_counter()
        scorers[name] = EvaluatorPool(spec, net, workers=workers, cfg=rcfg, stage_tokens=[int(windows[0].numel())],
                                      proxy_name="kl", gpus=1.0 if args.device.startswith("cuda") else 0.0)  # fmt: skip
        startup[name] = time.perf_counter() - began
    began = time.perf_counter()
    evaluator = Evaluator(model, Switcher(model, adapter), net, proxy, windows, batch_size=8)
    startup["in_process"] = time.perf_counter() - began
    scorers[configs[0]] = scorers[configs[1]] = evaluator

    pool = candidates(grid, args.batch * repeats, seed=0)
    rates: dict[str, list[float]] = {name: [] for name in configs}
    values: dict[str, list[float]] = {name: [] for name in configs}
    for rep in range(repeats):
        batch = pool[rep * args.batch : (rep + 1) * args.batch]
        for name in configs:  # round-robin, so drift in the machine's load hits every configuration
            scorer = scorers[name]
            if name in threads:
                torch.set_num_threads(threads[name])
                evaluator.cache.clear()
            began = time.perf_counter()
            got = scorer.score_many(batch, 0)
            rates[name].append(len(batch) / (time.perf_counter() - began))
            values[name].extend(got)
            print(f"repeat {rep}: {name} {rates[name][-1]:.2f} candidates/s", file=sys.stderr, flush=True)
    call_ms = ray_call_ms(scorers[configs[2]])
    for name in configs[2:]:
        scorers[name].close()
    ray.shutdown()

    median = {name: statistics.median(r) for name, r in rates.items()}
    results = {
        "model": f"strata-reference-{variant}",
        "device": args.device,
        "machine": start,
        "config": {
            "proxy": "kl",
            "tokens_per_candidate": int(windows[0].numel()),
            "seq_len": seq_len,
            "batch": args.batch,
            "repeats": repeats,
            "keep": keep,
            "supernet": "flap + bias",
            "threads_per_worker": args.threads_per_worker,
            "ray_logical_cpus": pool_cpus,
        },  # fmt: skip
        "candidates_per_second": {name: {"median": median[name], "all": rates[name]} for name in configs},
        "startup_seconds": startup,
        "ray_overhead_ms_per_candidate": {
            "1_worker_vs_in_process_1_thread": 1000 * (1 / median[configs[2]] - 1 / median[configs[0]]),
            "no_op_call_round_trip": call_ms,
        },
        "load_average_at_end": os.getloadavg(),
        "speedup_2_workers_over_1": median[configs[3]] / median[configs[2]],
        "same_values_bit_for_bit": {name: values[name] == values[configs[2]] for name in configs},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    print(table(results))
    return 0


def table(results: dict) -> str:
    cfg = results["config"]
    lines = [f"{results['model']} on {results['device']}, KL on {cfg['tokens_per_candidate']} tokens, batches of "
             f"{cfg['batch']}, median of {cfg['repeats']}", "",
             "| scorer | candidates/s | same values as ray_1_worker |", "|---|---|---|"]  # fmt: skip
    for name, rate in results["candidates_per_second"].items():
        lines.append(f"| {name} | {rate['median']:.2f} | {results['same_values_bit_for_bit'][name]} |")
    lines.append(f"\n2 workers / 1 worker: {results['speedup_2_workers_over_1']:.2f}x; Ray overhead per candidate "
                 f"{results['ray_overhead_ms_per_candidate']['1_worker_vs_in_process_1_thread']:.1f} ms (a no-op "
                 f"call {results['ray_overhead_ms_per_candidate']['no_op_call_round_trip']:.1f} ms); pool "
                 f"start-up {results['startup_seconds']['ray_1_worker']:.1f} s (1) and "
                 f"{results['startup_seconds']['ray_2_workers']:.1f} s (2)")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
