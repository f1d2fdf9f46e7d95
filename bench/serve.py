"""llama.cpp speed of the searched keep-0.5 model against the dense one, from the GGUF files strata exports.

    python -m bench.serve [--quick] [--threads N]

Two models: the built-in reference model (5.5M parameters) and a random model in TinyLlama-1.1B's real
layout (``bench.common.SIZES["1b"]``: 22 layers, hidden 2048, 32 heads in 4 GQA groups, MLP 5632). For
each, a short evolutionary search (as ``bench.speed``: KL fitness, FLAP supernet, MLP widths in multiples
of 64) picks the keep-0.5 allocation; the pruned model is saved as strata saves it and both models are
exported (:func:`supernet.io.export.gguf.export_gguf`) in f16 and q8_0 and run by llama-cpp-python's
llama.cpp on the CPU, interleaved:

- prefill: one ``eval`` of 512 tokens (logits of the last position), tokens/s;
- decode: one token per ``eval`` after a 128-token prompt, tokens/s.

Each speedup is reported against the FLOP-ideal ratio (:mod:`supernet.space.flops`, as ``bench.speed``) and
against the ratio of the files' bytes (what one decode step reads from memory). Writes
``bench/results/serve.json`` (``serve-quick.json`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import REFERENCE, SIZES, markdown_table, random_llama, setup, side_by_side, write_result
from bench.speed import random_calib, reference_calib, searched_allocation
from supernet.space.flops import decode_flops, model_shape, prefill_flops

PREFILL_TOKENS = 512
PROMPT_TOKENS = 128
KEEP = 0.5
DTYPES = ("f16", "q8_0")


def prune_and_save(path: Path, calib_fn, out: Path, args) -> tuple[dict, dict]:
    """Search the keep-0.5 allocation of the model at ``path`` and save it to ``out`` (strata's ``model/``);
    returns the allocation's info and the FLOP shapes of the dense and the pruned model."""
    from supernet.io.export import materialize, save_pruned
    from supernet.io.loading import load_model

    model, tokenizer, adapter = load_model(path, dtype="float32")
    dense_shape = model_shape(model, adapter)  # before the search, which leaves candidates installed
    levels, info, net, switcher = searched_allocation(model, adapter, calib_fn(tokenizer, adapter), KEEP, args)
    net.apply(switcher, levels)
    save_pruned(model, switcher.shapes(), tokenizer, out)
    pruned_shape = model_shape(materialize(model, switcher.shapes()), adapter)
    return {**info, "layer_shapes": switcher.shapes()}, {"dense": dense_shape, "pruned": pruned_shape}


def prefill_fn(llm, ids: list[int]):
    def run() -> None:
        llm.reset()
        llm.eval(ids)

    return run


def decode_fn(llm, prompt: list[int], tokens: list[int]):
    """Seconds of one-token evals (with the KV cache) after the prompt."""

    def run() -> float:
        llm.reset()
        llm.eval(prompt)
        start = time.perf_counter()
        for token in tokens:
            llm.eval([token])
        return time.perf_counter() - start

    return run


def time_pair(files: dict[str, Path], vocab: int, args) -> list[dict]:
    """Prefill and decode seconds of the dense and pruned GGUF files, calls interleaved."""
    import llama_cpp

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (PREFILL_TOKENS + args.decode_steps,), generator=generator).tolist()
    llms = {k: llama_cpp.Llama(str(p), n_ctx=1024, n_batch=512, n_threads=args.threads, verbose=False)
            for k, p in files.items()}  # fmt: skip
    try:
        prefill = side_by_side({k: prefill_fn(llm, ids[:PREFILL_TOKENS]) for k, llm in llms.items()},
                               repeats=args.repeats)  # fmt: skip
        steps = ids[PROMPT_TOKENS : PROMPT_TOKENS + args.decode_steps]
        decode = side_by_side({k: decode_fn(llm, ids[:PROMPT_TOKENS], steps) for k, llm in llms.items()},
                              repeats=args.repeats, self_timed=True)  # fmt: skip
    finally:
        for llm in llms.values():
            llm.close()
    return [("prefill", PREFILL_TOKENS, prefill), ("decode", args.decode_steps, decode)]


def bench_model(name: str, path: Path, calib_fn, work: Path, args) -> dict:
    from supernet.io.export.gguf import export_gguf

    info, shapes = prune_and_save(path, calib_fn, work / "pruned", args)
    out = {"model": name, "keep": KEEP, "allocation": info, "runs": []}
    flops = {
        "prefill": {k: prefill_flops(s, batch=1, tokens=PREFILL_TOKENS) for k, s in shapes.items()},
        "decode": {k: sum(decode_flops(s, batch=1, context=PROMPT_TOKENS + i + 1) for i in range(args.decode_steps))
                   for k, s in shapes.items()},
    }  # fmt: skip
    vocab = _vocab(path)
    for dtype in DTYPES:
        files = {"dense": export_gguf(path, work / f"dense-{dtype}.gguf", dtype=dtype),
                 "pruned": export_gguf(work / "pruned", work / f"pruned-{dtype}.gguf", dtype=dtype)}  # fmt: skip
        sizes = {k: p.stat().st_size for k, p in files.items()}
        for phase, tokens, times in time_pair(files, vocab, args):
            seconds = {k: t["median_s"] for k, t in times.items()}
            speedup = seconds["dense"] / seconds["pruned"]
            ideal = flops[phase]["dense"] / flops[phase]["pruned"]
            row = {"dtype": dtype, "phase": phase, "tokens": tokens, "bytes": sizes,
                   "tokens_per_s": {k: tokens / s for k, s in seconds.items()},
                   "samples_s": {k: t["samples_s"] for k, t in times.items()}, "speedup": speedup,
                   "flop_ideal": ideal, "fraction_of_flop_ideal": speedup / ideal,
                   "bytes_ratio": sizes["dense"] / sizes["pruned"]}  # fmt: skip
            out["runs"].append(row)
            print(f"{name} {dtype} {phase}: {row['tokens_per_s']['dense']:.1f} -> {row['tokens_per_s']['pruned']:.1f} "
                  f"tok/s, speedup {speedup:.3f} (FLOP-ideal {ideal:.3f}, bytes {row['bytes_ratio']:.3f})",
                  file=sys.stderr, flush=True)  # fmt: skip
        for p in files.values():
            p.unlink()
    return out


def _vocab(path: Path) -> int:
    """The embedding rows of the saved model at ``path``."""
    import json

    return json.loads((Path(path) / "config.json").read_text())["vocab_size"]


def table(results: dict) -> str:
    rows = [[m["model"], r["dtype"], r["phase"], f"{r['tokens_per_s']['dense']:.1f}",
             f"{r['tokens_per_s']['pruned']:.1f}", f"{r['speedup']:.3f}", f"{r['flop_ideal']:.3f}",
             f"{r['fraction_of_flop_ideal']:.3f}", f"{r['bytes_ratio']:.3f}"]
            for m in results["models"] for r in m["runs"]]  # fmt: skip
    header = ["model", "dtype", "phase", "dense tok/s", "pruned tok/s", "speedup", "FLOP-ideal", "of ideal",
              "bytes dense/pruned"]  # fmt: skip
    return markdown_table(header, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the reference model only, fewer repeats")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp and torch threads")
    parser.add_argument("--channel-quantum", type=int, default=64, help="MLP widths are multiples of this")
    args = parser.parse_args(argv)
    setup(args.threads)
    args.trials = 8 if args.quick else 16
    args.repeats = 3 if args.quick else 5
    args.decode_steps = 16 if args.quick else 32
    models = [("strata-reference-default", REFERENCE, reference_calib)]
    if not args.quick:
        models.append(("random-tinyllama-1.1b", random_llama(SIZES["1b"]), random_calib))
    work = Path(tempfile.mkdtemp(prefix="strata-serve-"))
    try:
        measured = [bench_model(name, path, calib, work / name, args) for name, path, calib in models]
        results = {"config": {"prefill_tokens": PREFILL_TOKENS, "prompt_tokens": PROMPT_TOKENS, "keep": KEEP,
                              "trials": args.trials, "repeats": args.repeats, "decode_steps": args.decode_steps,
                              "threads": args.threads, "channel_quantum": args.channel_quantum},
                   "models": measured}  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_result("serve", args.quick, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
