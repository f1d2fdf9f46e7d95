"""Speed of the pruned model against the dense one on CPU, and against the ideal ratio from FLOPs (issue 7.2).

    python -m bench.speed [--quick] [--dtype float32|bfloat16]

Two models: the built-in reference model (5.5M parameters, where CPU time is mostly per-call overhead)
and a randomly initialised 0.1B Llama (``bench.common.SIZES["0.1b"]``), where matrix products dominate.
For each, at keep 0.7 and 0.5: a short evolutionary search (KL fitness, multi-stage selection, warm
started from the no-search allocators) chooses a non-uniform allocation on a supernet built with MLP
widths in multiples of ``--channel-quantum`` (hardware-friendly widths); the winner is materialised
(:func:`supernet.io.export.materialize`: physically smaller, contiguous tensors, no masks) and timed
side by side with the dense model:

- prefill: one forward of [B, 512] tokens that fills the KV cache and returns the last position's
  logits (what ``generate`` does first), B = 1 and 8;
- decode: tokens per second of greedy steps with the KV cache after a prompt of 128 tokens, B = 1.

Each speedup t_dense / t_pruned is reported against the ideal F_dense / F_pruned (:mod:`supernet.space.flops`).
Writes ``bench/results/speed.json`` (``speed-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import torch

from bench.common import REFERENCE, SIZES, random_llama, setup, side_by_side, write_result
from supernet.space.flops import decode_flops, model_shape, prefill_flops

log = logging.getLogger("bench.speed")

PREFILL_TOKENS = 512
PREFILL_BATCHES = (1, 8)
PROMPT_TOKENS = 128
KEEPS = (0.7, 0.5)
STAGE_TOKENS = [256, 512]  # the search's selection stages: few tokens, the allocation only has to be a real one


@torch.inference_mode()
def prefill(model, ids: torch.Tensor) -> None:
    """Fill the KV cache for ``ids`` [B, T] and compute the last position's logits."""
    model(input_ids=ids, use_cache=True, logits_to_keep=1)


@torch.inference_mode()
def decode(model, prompt: torch.Tensor, steps: int) -> float:
    """Seconds of ``steps`` greedy decode steps with the KV cache, after prefilling ``prompt`` [B, P]."""
    out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    cache, token = out.cache, out.logits[:, -1:].argmax(-1)  # [B, 1]
    start = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=token, cache=cache, use_cache=True)
        cache, token = out.cache, out.logits[:, -1:].argmax(-1)
    return time.perf_counter() - start


def searched_allocation(model, adapter, calib, keep: float, args) -> tuple[list[int], dict, object, object]:
    """Build the supernet and run a short evolutionary search at ``keep``; returns levels, info, net, switcher."""
    from bench.search import searched
    from search.driver import SearchConfig
    from supernet.space.grids import supernet_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.config import SupernetConfig
    from supernet.variants.switch import Switcher

    scfg = SupernetConfig(criterion="flap", compensation="bias", channel_quantum=args.channel_quantum)
    grid = supernet_grid(adapter, keep, scfg)
    net = build_supernet(model, adapter, calib, scfg, grid, use_cache=False, progress=False)
    switcher = Switcher(model, adapter)
    cfg = SearchConfig(sampler="evo", trials=args.trials, offspring=8, stage_tokens=STAGE_TOKENS, survivors=[2, 1])
    levels, cost = searched(model, switcher, net, grid, calib, cfg, keep, seed=0)
    info = {
        "sampler": "evo",
        "proxy": "kl",
        "trials": cost["trials"],
        "seconds": cost["seconds"],
        "best_kl": cost["best_kl"],
        "uniform": list(grid.target) == list(levels),
        "supernet": {
            "criterion": scfg.criterion,
            "compensation": scfg.compensation,
            "channel_quantum": scfg.channel_quantum,
            "mlp_step": grid.step("mlp"),
        },  # fmt: skip
    }
    return levels, info, net, switcher


def materialised(model, switcher, net, levels):
    """The pruned model of ``levels`` as its own module; the live model is switched back to dense."""
    from supernet.io.export import materialize

    net.apply(switcher, levels)
    try:
        return materialize(model, switcher.shapes()), switcher.shapes()
    finally:
        switcher.apply(dict.fromkeys(switcher.current))


def compare(dense, pruned, adapter, vocab: int, *, repeats: int, decode_steps: int) -> dict:
    """Prefill and decode of dense vs pruned, interleaved; each speedup against its FLOP-ideal ratio."""
    shapes = {"dense": model_shape(dense, adapter), "pruned": model_shape(pruned, adapter)}
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch in PREFILL_BATCHES:
        ids = torch.randint(0, vocab, (batch, PREFILL_TOKENS), generator=generator)
        times = side_by_side({"dense": lambda ids=ids: prefill(dense, ids),
                              "pruned": lambda ids=ids: prefill(pruned, ids)}, repeats=repeats)  # fmt: skip
        flops = {k: prefill_flops(s, batch=batch, tokens=PREFILL_TOKENS) for k, s in shapes.items()}
        rows.append(_ratio({"phase": "prefill", "batch": batch, "tokens": PREFILL_TOKENS}, times, flops))
    prompt = torch.randint(0, vocab, (1, PROMPT_TOKENS), generator=generator)
    times = side_by_side({"dense": lambda: decode(dense, prompt, decode_steps),
                          "pruned": lambda: decode(pruned, prompt, decode_steps)}, repeats=repeats,
                         self_timed=True)  # fmt: skip
    flops = {
        k: sum(decode_flops(s, batch=1, context=PROMPT_TOKENS + i + 1) for i in range(decode_steps))
        for k, s in shapes.items()
    }
    row = _ratio({"phase": "decode", "batch": 1, "prompt": PROMPT_TOKENS, "steps": decode_steps}, times, flops)
    row["tokens_per_s"] = {k: decode_steps / times[k]["median_s"] for k in times}
    rows.append(row)
    return {"params": {k: sum(s.layer_weights) for k, s in shapes.items()}, "runs": rows}


def _ratio(row: dict, times: dict, flops: dict) -> dict:
    speedup = times["dense"]["median_s"] / times["pruned"]["median_s"]
    ideal = flops["dense"] / flops["pruned"]
    return {**row, "dense_s": times["dense"]["median_s"], "pruned_s": times["pruned"]["median_s"],
            "samples_s": {k: v["samples_s"] for k, v in times.items()}, "flops": flops,
            "speedup": speedup, "ideal": ideal, "fraction_of_ideal": speedup / ideal}  # fmt: skip


def bench_model(name: str, path, calib_fn, args) -> dict:
    from supernet.io.loading import load_model

    model, tokenizer, adapter = load_model(path, dtype=args.dtype)
    calib = calib_fn(tokenizer, adapter)
    out = {"model": name, "dtype": args.dtype, "dense_params": sum(p.numel() for p in model.parameters()),
           "keeps": []}  # fmt: skip
    for keep in args.keeps:
        levels, info, net, switcher = searched_allocation(model, adapter, calib, keep, args)
        pruned, shapes = materialised(model, switcher, net, levels)
        assert all(p.is_contiguous() for p in pruned.parameters()), "a materialised tensor is not contiguous"
        result = compare(model, pruned, adapter, adapter.geometry.vocab, repeats=args.repeats,
                         decode_steps=args.decode_steps)  # fmt: skip
        out["keeps"].append({"keep": keep, "allocation": info, "levels": list(levels), "layer_shapes": shapes,
                             **result})  # fmt: skip
        for r in result["runs"]:
            print(f"{name} keep {keep} {r['phase']} B={r['batch']}: speedup {r['speedup']:.3f} ideal "
                  f"{r['ideal']:.3f} ({r['fraction_of_ideal']:.3f} of ideal)", file=sys.stderr, flush=True)  # fmt: skip
        del pruned
    return out


def reference_calib(tokenizer, adapter) -> torch.Tensor:
    from supernet.io.data import load_texts
    from supernet.io.windows import pack_tokens

    return pack_tokens(tokenizer, load_texts("builtin", split="train"), seq_len=256, num_sequences=8, seed=0)


def random_calib(tokenizer, adapter) -> torch.Tensor:
    """Random token windows: the 0.1B model is random too, so no text is more telling than noise."""
    return torch.randint(0, adapter.geometry.vocab, (4, 256), generator=torch.Generator().manual_seed(0))


def table(results: dict) -> str:
    lines = ["| model | keep | phase | batch | dense s | pruned s | speedup | FLOP-ideal | of ideal |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for m in results["models"]:
        for k in m["keeps"]:
            for r in k["runs"]:
                lines.append(f"| {m['model']} | {k['keep']} | {r['phase']} | {r['batch']} | {r['dense_s']:.4f} | "
                             f"{r['pruned_s']:.4f} | {r['speedup']:.3f} | {r['ideal']:.3f} | "
                             f"{r['fraction_of_ideal']:.3f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer search trials and repeats")
    parser.add_argument("--dtype", default="float32", help="weights dtype: float32 | bfloat16")
    parser.add_argument("--channel-quantum", type=int, default=64, help="MLP widths are multiples of this")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see bench.common.setup)")
    args = parser.parse_args(argv)
    setup(args.threads)
    args.trials = 16 if args.quick else 32
    args.repeats = 3 if args.quick else 5
    args.decode_steps = 16 if args.quick else 32
    args.keeps = (0.5,) if args.quick else KEEPS
    models = [
        bench_model("strata-reference-default", REFERENCE, reference_calib, args),
        bench_model("random-llama-0.1b", random_llama(SIZES["0.1b"]), random_calib, args),
    ]
    results = {"config": {"prefill_tokens": PREFILL_TOKENS, "prompt_tokens": PROMPT_TOKENS, "keeps": list(args.keeps),
                          "trials": args.trials, "repeats": args.repeats, "decode_steps": args.decode_steps,
                          "dtype": args.dtype, "channel_quantum": args.channel_quantum},
               "models": models}  # fmt: skip
    write_result("speed", args.quick, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
