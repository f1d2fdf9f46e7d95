"""Cost of scoring a candidate against a bare forward pass of its materialised model (issue 7.3).

    python -m bench.scoring [--quick]

On the reference model and on a random 0.1B Llama, at keep 0.5: the parent is the uniform allocation,
the candidates are its level-switch offspring (search/mutation.py, as the evolution proposes them).
For each candidate, side by side in one loop, starting each time from the parent installed:

- ``score``: switch the live model to the candidate (:meth:`Supernet.apply`) and score it with ``kl`` on
  T tokens, as the search does: teacher log-probabilities cached once, prefix reuse on
  (:mod:`proxies.prefix`: the parent's and earlier siblings' hidden states are stored);
- ``cold``: the same with prefix reuse off (every candidate from the embeddings);
- ``unoptimised``: the same candidate switch, then the model's own forward (KV cache on) and the
  per-token top-k KL over whole [tokens, k] tensors, as ``kl`` scored before issue 7;
- ``bare``: a forward pass of the materialised candidate (:func:`supernet.io.export.materialize`) on the
  same T tokens, logits of every position, no cache.

Reported: the median over candidates of each time over ``bare``, the switch time alone, and the share of
decoder-layer calls the prefix reuse saved. Writes ``bench/results/scoring.json``.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys

import numpy as np
import torch

from bench.common import REFERENCE, SIZES, random_llama, setup, timed, write_result

log = logging.getLogger("bench.scoring")
KEEP = 0.5
BATCH_SIZE = 8
PATHS = ("score", "cold", "unoptimised")  # the scoring paths compared with the bare forward


def offspring(grid, parent: list[int], count: int, seed: int) -> list[list[int]]:
    """``count`` distinct level-switch children of ``parent`` (Týr's 1-4 pairs)."""
    from search.mutation import level_switch

    rng = np.random.default_rng(seed)
    children: list[list[int]] = []
    while len(children) < count:
        child = level_switch(rng, parent, grid, max_pairs=4)
        if child != parent and child not in children:
            children.append(child)
    return children


class Unoptimised:
    """``kl`` as scored before issue 7: the model's forward (KV cache on) and per-token top-k KL."""

    def __init__(self, model, batches, top_k: int) -> None:
        from proxies.kl import topk_kl

        self.topk_kl = topk_kl
        self.teacher = []
        with torch.no_grad():
            for batch in batches:
                logits = model(input_ids=batch).logits.reshape(-1, model.config.vocab_size)
                values, index = logits.topk(min(top_k, logits.shape[-1]), dim=-1, sorted=False)
                self.teacher.append((values, index.to(torch.int32)))

    @torch.no_grad()
    def score(self, model, batches) -> float:
        total, tokens = 0.0, 0
        for batch, (values, index) in zip(batches, self.teacher, strict=True):
            logits = model(input_ids=batch).logits
            logits = logits.reshape(-1, logits.shape[-1])  # [tokens, vocab]
            total += self.topk_kl(values, index, logits).double().sum().item()
            tokens += logits.shape[0]
        return total / tokens


def bench_model(name: str, path, tokens: torch.Tensor | None, children: int, args) -> dict:
    from proxies import as_batches
    from proxies.kl import KLProxy
    from supernet.io.export import materialize
    from supernet.io.loading import load_model
    from supernet.space.grids import supernet_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.config import SupernetConfig
    from supernet.variants.switch import Switcher

    model, tokenizer, adapter = load_model(path, dtype=args.dtype)
    if tokens is None:
        tokens = torch.randint(0, adapter.geometry.vocab, (4, 256), generator=torch.Generator().manual_seed(0))
    scfg = SupernetConfig(criterion="flap", compensation="bias", channel_quantum=64)
    grid = supernet_grid(adapter, KEEP, scfg)
    net = build_supernet(model, adapter, tokens, scfg, grid, use_cache=False, progress=False)
    switcher = Switcher(model, adapter)
    batches = as_batches(tokens, BATCH_SIZE)
    score, cold = KLProxy(switcher), KLProxy(switcher, reuse_bytes=0)
    for proxy in (score, cold):
        proxy.prepare(model, batches)
    unoptimised = Unoptimised(model, batches, score.top_k)
    parent = list(grid.target)
    net.apply(switcher, parent)
    score.score(model, batches)  # the parent was scored before its offspring
    times: dict[str, list[float]] = {k: [] for k in ("score", "cold", "unoptimised", "bare", "switch")}
    for child in offspring(grid, parent, children, seed=0):
        for key, proxy in (("score", score), ("cold", cold), ("unoptimised", unoptimised)):
            net.apply(switcher, parent)
            times[key].append(timed(lambda p=proxy, c=child: (net.apply(switcher, c), p.score(model, batches))))
        net.apply(switcher, parent)
        times["switch"].append(timed(lambda c=child: net.apply(switcher, c)))
        pruned = materialize(model, switcher.shapes())
        with torch.no_grad():
            pruned(input_ids=batches[0][:1], use_cache=False)  # warm-up of the new module's kernels
            times["bare"].append(timed(lambda m=pruned: [m(input_ids=b, use_cache=False).logits for b in batches]))
        del pruned
    reused, run = score.forward.layers_reused, score.forward.layers_run
    ratios = {
        k: [t / b for t, b in zip(times[k], times["bare"], strict=True)] for k in ("score", "cold", "unoptimised")
    }
    out = {
        "model": name,
        "dtype": args.dtype,
        "tokens": int(tokens.numel()),
        "candidates": children,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "vs_bare": {k: statistics.median(v) for k, v in ratios.items()},
        "ratios": ratios,
        "samples_s": times,
        "layers_reused_fraction": reused / (reused + run),
        "teacher_cache_bytes": score.cache_bytes(),
        "prefix_store_bytes": score.forward.bytes,
    }
    print(f"{name}: score/bare {out['vs_bare']['score']:.3f}, cold {out['vs_bare']['cold']:.3f}, unoptimised "
          f"{out['vs_bare']['unoptimised']:.3f}, layers reused {out['layers_reused_fraction']:.2f}",
          file=sys.stderr, flush=True)  # fmt: skip
    return out


def table(results: dict) -> str:
    lines = ["| model | T tokens | bare forward s | score / bare | cold / bare | unoptimised / bare | switch s | "
             "layers reused |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for m in results["models"]:
        r, s = m["vs_bare"], m["median_s"]
        lines.append(f"| {m['model']} | {m['tokens']} | {s['bare']:.4f} | {r['score']:.3f} | {r['cold']:.3f} | "
                     f"{r['unoptimised']:.3f} | {s['switch']:.4f} | {m['layers_reused_fraction']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer candidates")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (see bench.common.setup)")
    args = parser.parse_args(argv)
    setup(args.threads)
    from supernet.io.data import load_texts
    from supernet.io.loading import load_model
    from supernet.io.windows import pack_tokens

    _, tokenizer, _ = load_model(REFERENCE)
    text = pack_tokens(tokenizer, load_texts("builtin", split="train"), seq_len=256, num_sequences=8, seed=0)
    children = (8, 6) if args.quick else (24, 16)
    models = [
        bench_model("strata-reference-default", REFERENCE, text, children[0], args),
        bench_model("random-llama-0.1b", random_llama(SIZES["0.1b"]), None, children[1], args),
    ]
    results = {"config": {"keep": KEEP, "batch_size": BATCH_SIZE, "proxy": "kl", "top_k": 8192,
                          "parent": "uniform", "threads": args.threads}, "models": models}  # fmt: skip
    write_result("scoring", args.quick, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
