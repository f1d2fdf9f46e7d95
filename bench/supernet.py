"""Benchmark of the supernet on the reference model (issue 3).

    python bench/supernet.py [--quick] [--model default|tiny] [--keeps 0.7 0.5]

For keep 0.7 and 0.5: held-out perplexity of every criterion x compensation under the uniform and
flap_global allocations; build time; cache bytes over dense bytes (and over Týr-the-Pruner's layout,
9 zero-filled bf16 copies of every o_proj and down_proj); peak resident memory; time to switch one
module vs one forward pass; and the dense vs expected propagation ablation for the best combination.
Writes ``bench/results/supernet.json`` and prints a markdown table. If the ``default`` reference model
is not built yet, it falls back to ``tiny`` (and says so) rather than training for minutes.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import markdown_table  # noqa: E402
from supernet.io.data import load_texts  # noqa: E402
from supernet.io.files import write_json  # noqa: E402
from supernet.io.loading import load_model  # noqa: E402
from supernet.io.perplexity import perplexity  # noqa: E402
from supernet.io.windows import pack_tokens  # noqa: E402
from supernet.space.allocators import allocate  # noqa: E402
from supernet.space.grids import supernet_grid  # noqa: E402
from supernet.variants.build import build_supernet  # noqa: E402
from supernet.variants.config import SupernetConfig, supernet_pairs  # noqa: E402
from supernet.variants.switch import Switcher  # noqa: E402

log = logging.getLogger("bench.supernet")
ALLOCATIONS = ("uniform", "flap_global")


def reference_dir(variant: str) -> tuple[Path, str]:
    """The reference model directory, without training ``default`` here if it is missing."""
    from supernet.io.reference.build import ARTIFACTS_DIR, _matches, _recipe, cache_root, reference_model_dir
    from supernet.io.reference.recipe import reference_key

    if variant == "default":
        key = reference_key(_recipe("default"))
        for candidate in (ARTIFACTS_DIR / "default", cache_root() / "reference" / f"default-{key}"):
            if _matches(candidate, key):
                return candidate, "default"
        log.warning("reference model 'default' is not built yet: benchmarking 'tiny' instead")
        variant = "tiny"
    return reference_model_dir(variant), variant


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def tyr_bytes(adapter, levels: int) -> int:
    """Týr's layout: ``levels`` zero-filled bf16 copies of every o_proj and down_proj."""
    geo = adapter.geometry
    per_layer = geo.hidden * geo.num_heads * geo.head_dim + geo.hidden * geo.intermediate
    return levels * geo.num_layers * per_layer * 2


def switch_vs_forward(model, adapter, net, tokens) -> dict:
    """Seconds to switch one module to another level (mean over many) vs one forward pass."""
    switcher = Switcher(model, adapter)
    levels = list(net.grid.target)
    net.apply(switcher, levels)
    i = next(k for k, m in enumerate(net.grid.modules) if m.kind == "mlp" and levels[k] > m.lo)
    start, n = time.perf_counter(), 50
    for step in range(n):
        levels[i] += -1 if step % 2 == 0 else 1
        assert net.apply(switcher, levels) == 1
    switch_s = (time.perf_counter() - start) / n
    with torch.no_grad():
        model(tokens)  # warm-up
        start = time.perf_counter()
        model(tokens)
        forward_s = time.perf_counter() - start
    switcher.apply({key: None for key in switcher.current})
    return {"switch_module_s": switch_s, "forward_s": forward_s, "forward_tokens": tokens.numel()}


def evaluate(model, adapter, net, allocator: str, keep: float, held_out, batch_size: int) -> float:
    switcher = Switcher(model, adapter)
    net.apply(switcher, allocate(allocator, net, net.grid, keep))
    try:
        return perplexity(model, held_out, batch_size=batch_size, progress=False)
    finally:
        switcher.apply({key: None for key in switcher.current})


def table(results: dict) -> str:
    header = ["keep", "criterion", "compensation", "ppl uniform", "ppl flap_global", "build s", "cache / dense",
              "cache / Týr"]  # fmt: skip
    return markdown_table(header, [
        [r["keep"], r["criterion"], r["compensation"], r["ppl"]["uniform"], r["ppl"]["flap_global"],
         f"{r['build_seconds']:.1f}", f"{r['cache_over_dense']:.4f}", f"{r['cache_over_tyr']:.4f}"]
        for r in results["runs"]
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calibration and evaluation windows")
    parser.add_argument("--model", default="default", help="reference variant: default | tiny")
    parser.add_argument("--keeps", type=float, nargs="+", default=[0.7, 0.5])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "supernet.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(0)
    torch.set_num_threads(max(1, psutil.cpu_count(logical=False) or 1))

    model_dir, variant = reference_dir(args.model)
    model, tokenizer, adapter = load_model(model_dir)
    seq_len, calib_n, eval_n = (128, 16, 32) if args.quick else (256, 32, 64)
    calib = pack_tokens(tokenizer, load_texts("builtin", split="train"), seq_len=seq_len, num_sequences=calib_n, seed=0)
    held_out = pack_tokens(
        tokenizer, load_texts("builtin", split="eval"), seq_len=seq_len, num_sequences=eval_n, seed=0
    )
    dense_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    results: dict = {
        "model": f"strata-reference-{variant}",
        "calibration": {"sequences": calib_n, "seq_len": seq_len},
        "eval": {"windows": eval_n, "seq_len": seq_len},
        "dense": {"ppl": perplexity(model, held_out, progress=False), "bytes": dense_bytes},
        "runs": [],
    }
    cache_root = Path(tempfile.mkdtemp(prefix="strata-bench-supernet-"))
    for keep, (criterion, compensation) in itertools.product(args.keeps, supernet_pairs()):
        cfg = SupernetConfig(criterion=criterion, compensation=compensation)
        grid = supernet_grid(adapter, keep, cfg)
        net = build_supernet(model, adapter, calib, cfg, grid, cache_dir=cache_root, progress=False)
        levels = 2 * cfg.radius + 1
        row = {
            "keep": keep,
            "criterion": criterion,
            "compensation": compensation,
            "build_seconds": net.build_seconds,
            "cache_bytes": net.cache_bytes,
            "cache_over_dense": net.cache_bytes / dense_bytes,
            "cache_over_tyr": net.cache_bytes / tyr_bytes(adapter, levels),
            "ppl": {a: evaluate(model, adapter, net, a, keep, held_out, 8) for a in ALLOCATIONS},
        }
        results["runs"].append(row)
        print(f"keep {keep} {criterion:9s} {compensation:6s} ppl {row['ppl']}", file=sys.stderr, flush=True)
    # propagate ablation for the best combination at the lowest keep, uniform
    low = min(args.keeps)
    best = min((r for r in results["runs"] if r["keep"] == low), key=lambda r: r["ppl"]["uniform"])
    cfg = SupernetConfig(criterion=best["criterion"], compensation=best["compensation"], propagate="expected")
    net = build_supernet(
        model, adapter, calib, cfg, supernet_grid(adapter, low, cfg), cache_dir=cache_root, progress=False
    )
    results["propagate"] = {
        "keep": low,
        "criterion": best["criterion"],
        "compensation": best["compensation"],
        "dense_ppl": best["ppl"]["uniform"],
        "expected_ppl": evaluate(model, adapter, net, "uniform", low, held_out, 8),
        "expected_build_seconds": net.build_seconds,
    }
    baseline = next(
        r for r in results["runs"] if r["keep"] == low and r["criterion"] == "magnitude" and r["compensation"] == "none"
    )
    results["best_over_magnitude_none"] = best["ppl"]["uniform"] / baseline["ppl"]["uniform"]
    results["timing"] = switch_vs_forward(model, adapter, net, held_out[:8])
    results["peak_rss_mib"] = peak_rss_mib()
    results["tyr_bytes_9_levels"] = tyr_bytes(adapter, 9)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    print(table(results))
    p = results["propagate"]
    print(
        f"\ndense ppl {results['dense']['ppl']:.2f} | propagate at keep {low} ({p['criterion']}+{p['compensation']}, "
        f"uniform): dense {p['dense_ppl']:.2f} vs expected {p['expected_ppl']:.2f} | best/magnitude+none "
        f"{results['best_over_magnitude_none']:.3f} | switch one module "
        f"{1e3 * results['timing']['switch_module_s']:.2f} ms vs forward "
        f"{1e3 * results['timing']['forward_s']:.1f} ms | peak RSS {results['peak_rss_mib']:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
