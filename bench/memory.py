"""Peak memory and time of the supernet build for 0.1B, 0.5B and 1B Llamas, projected to 7B and 70B (issue 7.4).

    python -m bench.memory [--quick]

Each model is randomly initialised from a config (``bench.common.SIZES``; memory and time do not depend
on the values) and saved once as bf16 safetensors. A fresh subprocess per size loads it with
``model.dtype=bfloat16`` (the weights stay memory-mapped from the file, :mod:`supernet.io.loading`) and
builds the supernet as ``strata`` does (FLAP criterion, bias compensation, cache on, few calibration
tokens); its peak resident set size (``ru_maxrss``: mapped weight pages that were read count as
resident, once) is compared with the model's bytes on disk. A line fitted through
(model bytes, peak bytes) and (parameters, build seconds) projects Llama-2-7B and Llama-2-70B.
Writes ``bench/results/memory.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import SIZES, child_python, fit_line, model_file_bytes, peak_rss_bytes, random_llama, write_result

PROJECTED = {"llama-2-7b": 6_738_415_616, "llama-2-70b": 68_976_648_192}  # parameters (bf16: 2 bytes each)
SEQ_LEN = 128


def _status() -> dict[str, int]:
    """Current anonymous and file-backed resident bytes (Linux /proc/self/status)."""
    out = {}
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith(("RssAnon:", "RssFile:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) * 1024
    return out


def child(path: Path, sequences: int, cache_dir: Path) -> dict:
    """In a fresh process: load in bf16, build the supernet; peak RSS and timings."""
    import torch

    from supernet.io.loading import load_model, mapped_bytes
    from supernet.space.grids import supernet_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.config import SupernetConfig

    torch.set_num_threads(1)
    baseline = peak_rss_bytes()  # the interpreter with torch and transformers imported
    start = time.perf_counter()
    model, _, adapter = load_model(path, dtype="bfloat16")
    load_s = time.perf_counter() - start
    after_load = psutil.Process().memory_info().rss
    tokens = torch.randint(0, adapter.geometry.vocab, (sequences, SEQ_LEN), generator=torch.Generator().manual_seed(0))
    cfg = SupernetConfig(criterion="flap", compensation="bias")
    grid = supernet_grid(adapter, 0.5, cfg)
    start = time.perf_counter()
    net = build_supernet(model, adapter, tokens, cfg, grid, cache_dir=cache_dir, progress=False)
    build_s = time.perf_counter() - start
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "layers": adapter.geometry.num_layers,
        "param_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "mapped_bytes": mapped_bytes(model, path),
        "baseline_peak_bytes": baseline,
        "rss_after_load_bytes": after_load,
        "peak_rss_bytes": peak_rss_bytes(),
        "resident_at_end": _status(),
        "load_s": load_s,
        "build_s": build_s,
        "cache_bytes": net.cache_bytes,
        "calibration_tokens": sequences * SEQ_LEN,
    }


def measure(size: str, sequences: int) -> dict:
    path = random_llama(SIZES[size], dtype="bfloat16")
    with tempfile.TemporaryDirectory(prefix="strata-bench-memory-") as cache_dir:
        args = ["--child", str(path), "--sequences", str(sequences), "--cache-dir", cache_dir]
        proc = subprocess.run(child_python("bench.memory", *args), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child for {size} failed:\n{proc.stderr[-3000:]}")
    row = json.loads(proc.stdout.strip().splitlines()[-1])
    row["size"] = size
    row["model_bytes"] = model_file_bytes(path)
    row["peak_over_model_bytes"] = row["peak_rss_bytes"] / row["model_bytes"]
    row["peak_minus_baseline_over_model_bytes"] = (row["peak_rss_bytes"] - row["baseline_peak_bytes"]) / row[
        "model_bytes"
    ]
    print(f"{size}: peak {row['peak_rss_bytes'] / 2**30:.2f} GiB = {row['peak_over_model_bytes']:.3f} x model "
          f"bytes, build {row['build_s']:.1f} s", file=sys.stderr, flush=True)  # fmt: skip
    return row


def projections(rows: list[dict]) -> dict:
    """Peak bytes and build seconds of 7B and 70B from the lines fitted through the measured sizes."""
    memory = fit_line([r["model_bytes"] for r in rows], [r["peak_rss_bytes"] for r in rows])
    seconds = fit_line([r["params"] for r in rows], [r["build_s"] for r in rows])
    out = {"memory_fit": memory, "build_time_fit": seconds, "models": {}}
    for name, params in PROJECTED.items():
        model_bytes = 2 * params
        peak = memory["slope"] * model_bytes + memory["intercept"]
        out["models"][name] = {
            "params": params,
            "model_bytes": model_bytes,
            "peak_bytes": peak,
            "peak_over_model_bytes": peak / model_bytes,
            "build_s": seconds["slope"] * params + seconds["intercept"],
        }
    return out


def table(results: dict) -> str:
    lines = ["| model | params | model bytes (bf16) | peak RSS | peak / model bytes | build s |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in results["sizes"]:
        lines.append(f"| random-llama-{r['size']} | {r['params'] / 1e9:.2f}B | {r['model_bytes'] / 2**30:.2f} GiB | "
                     f"{r['peak_rss_bytes'] / 2**30:.2f} GiB | {r['peak_over_model_bytes']:.3f} | "
                     f"{r['build_s']:.1f} |")  # fmt: skip
    for name, p in results["projection"]["models"].items():
        lines.append(
            f"| {name} (projected) | {p['params'] / 1e9:.2f}B | {p['model_bytes'] / 2**30:.2f} GiB | "
            f"{p['peak_bytes'] / 2**30:.2f} GiB | {p['peak_over_model_bytes']:.3f} | {p['build_s']:.0f} |"
        )
    fit = results["projection"]["memory_fit"]
    intercept = fit["intercept"] / 2**20
    lines.append(f"\npeak = {fit['slope']:.3f} x model bytes + {intercept:.0f} MiB (r^2 {fit['r2']:.4f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calibration tokens")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sequences", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.sequences, args.cache_dir)))
        return 0
    sequences = 2 if args.quick else 4
    rows = [measure(size, sequences) for size in SIZES]
    results = {"config": {"dtype": "bfloat16", "criterion": "flap", "compensation": "bias", "seq_len": SEQ_LEN,
                          "calibration_sequences": sequences, "threads": 1}, "sizes": rows,
               "projection": projections(rows)}  # fmt: skip
    write_result("memory", args.quick, results)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
