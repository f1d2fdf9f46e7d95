"""A 1.1B model end to end on the CPU, streamed and not (``python -m bench.scale --cpu-full``; issue 29, item 4).

TinyLlama-1.1B's layout (22 layers, hidden 2048, 32 heads on 4 K/V heads, MLP 5632, vocab 32000, untied), random
weights N(0, 0.02) stored in bf16 (:func:`bench.common.random_llama`), loaded in float32 (``model.dtype``'s
default), the run's defaults everywhere (OBS + refit with an intercept, 32 calibration windows of 256 tokens of the
built-in corpus, keep 0.5 of the block parameters) except the search, shortened to :data:`SHORT_SEARCH` (two
complete trials of evolution on 128/256/512 tokens instead of 200 on 1024/2048/8192).

Every stage runs in a fresh subprocess (``python -m bench.scale_cpu --stage ...``), so each peak RSS (``ru_maxrss``)
is that stage's alone:

1. ``build``, ``streamed`` (the layers read one at a time from the files, :mod:`supernet.io.streaming`) and
   ``unstreamed`` (``load_model``, then the build): seconds to load and to build, peak RSS, the supernet cache's
   bytes, and per layer the seconds and peak RSS when it started (the depth figures);
2. ``search``: the model loaded whole (scoring needs it), the supernet from the streamed build's cache, the
   shortened search; its best allocation goes to the export;
3. ``export`` of that allocation, ``streamed`` (:func:`supernet.variants.streamed_export.save_pruned_streamed`) and
   ``unstreamed`` (``save_pruned`` of the live model), each followed by ``model.gguf`` (f32); the two outputs are
   compared byte for byte.

Headline keys: ``stream_peak_rss_vs_model_bytes`` (the streamed build's peak RSS over the model's bytes in the
load dtype; target <= 0.35), ``stream_time_vs_unstreamed`` (load + build seconds, streamed over unstreamed; target
<= 1.15) and ``depth_r2`` (r^2 of a line through the streamed build's seconds after 4, 8, 16 and 22 layers; target
>= 0.98). ``--depth-models`` builds separate 4-, 8- and 16-layer models instead (28 more layers: the lead's run on
a quiet machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import filecmp
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import SIZES, child_python, fit_line, peak_rss_bytes, random_llama, setup

log = logging.getLogger("bench.scale_cpu")
DTYPE = "float32"  # model.dtype's default
DEPTHS = (4, 8, 16, 22)  # the depth series at the full 22 layers; a cut model (--layers) scales it
SHORT_SEARCH = {"sampler": "evo", "trials": 2, "offspring": 2, "stage_tokens": [128, 256, 512], "survivors": [1, 1, 1]}


# ---- the stages, each in its own process ----------------------------------------------------------------------
def calibration(path: Path):
    """The run's calibration and fitness windows (data's defaults: 32 x 256 tokens of the built-in corpus)."""
    from transformers import AutoTokenizer

    from search.app.inputs import train_windows
    from supernet.io.data import DataConfig

    tokenizer = AutoTokenizer.from_pretrained(path)
    return train_windows(
        DataConfig(source="builtin"), tokenizer, seed=0, fitness_tokens=SHORT_SEARCH["stage_tokens"][-1]
    )


def opened(path: Path, variant: str):
    """(model, adapter, stream): the skeleton and its stream, or the model loaded whole and None."""
    from supernet.io.loading import load_model
    from supernet.io.streaming import LayerStream

    if variant == "streamed":
        stream = LayerStream(path, dtype=DTYPE)
        return stream.model, stream.adapter, stream
    model, _, adapter = load_model(path, dtype=DTYPE)
    return model, adapter, None


def supernet(path: Path, variant: str, cache: Path, marks: list | None = None):
    """Open the model and build (or load from ``cache``) the default supernet; with ``marks``, (seconds, peak RSS)
    appended when each decoder layer first runs. Returns (model, adapter, stream, net, load seconds)."""
    from supernet.io.identity import weight_files
    from supernet.space.budget import BudgetConfig, budget_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.config import SupernetConfig

    calib, _ = calibration(path)
    start = time.perf_counter()
    weights = weight_files(path, getattr(torch, DTYPE))
    model, adapter, stream = opened(path, variant)
    load_s = time.perf_counter() - start
    cfg = SupernetConfig(stream=variant == "streamed")
    grid = budget_grid(model, adapter, BudgetConfig(), cfg)
    handles = []
    if marks is not None:
        seen = set()

        def mark(module, _args):
            if id(module) not in seen:
                seen.add(id(module))
                marks.append((time.perf_counter() - start, peak_rss_bytes()))

        handles = [layer.register_forward_pre_hook(mark) for layer in adapter.decoder_layers(model)]
    try:
        net = build_supernet(model, adapter, calib, cfg, grid, cache_dir=cache, weights=weights, progress=False,
                             stream=stream)  # fmt: skip
    finally:
        for handle in handles:
            handle.remove()
    return model, adapter, stream, net, load_s


def stage_build(args) -> dict:
    marks: list = []
    start = time.perf_counter()
    _, _, _, net, load_s = supernet(Path(args.model), args.variant, Path(args.cache), marks)
    total = time.perf_counter() - start
    return {"load_s": load_s, "build_s": net.build_seconds, "load_build_s": total, "from_cache": net.from_cache,
            "cache_bytes": net.cache_bytes, "peak_rss_bytes": peak_rss_bytes(),
            "layer_starts": [{"layer": i, "s": s, "peak_rss_bytes": r} for i, (s, r) in enumerate(marks)],
            "end_s": total}  # fmt: skip


def stage_search(args) -> dict:
    from bench.search import searched
    from search.driver import SearchConfig
    from supernet.variants.switch import Switcher

    start = time.perf_counter()
    model, adapter, _, net, _ = supernet(Path(args.model), "unstreamed", Path(args.cache))
    _, fitness = calibration(Path(args.model))
    levels, figures = searched(model, Switcher(model, adapter), net, net.grid, fitness, SearchConfig(**SHORT_SEARCH),
                               0.5, seed=0)  # fmt: skip
    figures.pop("best_curve")
    return {"s": time.perf_counter() - start, "search": figures, "levels": levels, "peak_rss_bytes": peak_rss_bytes()}


def stage_export(args) -> dict:
    from supernet.io.export import save_pruned
    from supernet.io.export.gguf import export_gguf
    from supernet.variants.streamed_export import save_pruned_streamed
    from supernet.variants.switch import Switcher

    start = time.perf_counter()
    path, out = Path(args.model), Path(args.out_dir)
    model, adapter, stream, net, _ = supernet(path, args.variant, Path(args.cache))
    levels = json.loads(Path(args.levels).read_text())
    tokenizer = __import__("transformers").AutoTokenizer.from_pretrained(path)
    ready = time.perf_counter()
    if stream is not None:
        save_pruned_streamed(stream, net.variants(levels), tokenizer, out / "model")
    else:
        switcher = Switcher(model, adapter)
        net.apply(switcher, levels)
        save_pruned(model, switcher.shapes(), tokenizer, out / "model")
    saved = time.perf_counter()
    export_gguf(out / "model", out / "model.gguf")
    return {"prepare_s": ready - start, "model_dir_s": saved - ready, "gguf_s": time.perf_counter() - saved,
            "peak_rss_bytes": peak_rss_bytes()}  # fmt: skip


STAGES = {"build": stage_build, "search": stage_search, "export": stage_export}


def stage_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one stage of bench.scale --cpu-full, in this process")
    parser.add_argument("--stage", choices=list(STAGES), required=True)
    for name in ("--model", "--cache", "--result"):
        parser.add_argument(name, required=True)
    parser.add_argument("--variant", choices=["streamed", "unstreamed"], default="unstreamed")
    parser.add_argument("--levels", default=None)
    parser.add_argument("--out-dir", default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    args = parser.parse_args(argv)
    setup(args.threads or torch.get_num_threads())
    Path(args.result).write_text(json.dumps(STAGES[args.stage](args)))
    return 0


# ---- the driver ---------------------------------------------------------------------------------------------------
def run_stage(work: Path, stage: str, model: Path, cache: Path, **options) -> dict:
    """One stage in a fresh ``python -m bench.scale_cpu`` process; its result."""
    result = work / f"{stage}-{options.get('variant', '')}-{model.name}.json"
    extra = [a for k, v in options.items() if v is not None for a in (f"--{k.replace('_', '-')}", str(v))]
    command = child_python("bench.scale_cpu", "--stage", stage, "--model", str(model), "--cache", str(cache),
                           "--result", str(result), *extra)  # fmt: skip
    print(f"  {stage} {options.get('variant', '')} ({model.name})...", file=sys.stderr, flush=True)
    subprocess.run(command, check=True)
    return json.loads(result.read_text())


def same_tree(a: Path, b: Path) -> bool:
    """Whether two directories (or files) hold the same files, byte for byte."""
    if a.is_file():
        return filecmp.cmp(a, b, shallow=False)
    names = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if names != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    return all(filecmp.cmp(a / n, b / n, shallow=False) for n in names)


def depth_series(work: Path, build: dict, models: bool, threads: int | None) -> dict:
    """Seconds and peak RSS of the streamed build at 4, 8, 16 and 22 layers, and the line through the seconds:
    from the 22-layer build's layer starts (seconds when layer k started = k layers done), or with ``models``
    from separate 4-, 8- and 16-layer models built in their own processes."""
    layers = len(build["layer_starts"])
    rows = []
    for depth in sorted({max(1, round(layers * d / DEPTHS[-1])) for d in DEPTHS}):
        if depth == layers:
            rows.append({"layers": depth, "s": build["end_s"], "peak_rss_bytes": build["peak_rss_bytes"]})
        elif models:
            spec = dataclasses.replace(SIZES["1b"], layers=depth)
            small = run_stage(work, "build", random_llama(spec, dtype="bfloat16"), work / f"cache-{depth}",
                              variant="streamed", threads=threads)  # fmt: skip
            rows.append({"layers": depth, "s": small["end_s"], "peak_rss_bytes": small["peak_rss_bytes"]})
        else:
            start = build["layer_starts"][depth]
            rows.append({"layers": depth, "s": start["s"], "peak_rss_bytes": start["peak_rss_bytes"]})
    fit = fit_line([r["layers"] for r in rows], [r["s"] for r in rows])
    source = "separate models" if models else "layer starts of the streamed 22-layer build"
    return {"source": source, "rows": rows, "seconds_fit": fit}


def cpu_full(args) -> dict:
    """Every stage of the 1.1B layout, streamed and unstreamed; the result payload."""
    from supernet.io.streaming import weights_bytes

    spec = dataclasses.replace(SIZES["1b"], layers=args.layers or SIZES["1b"].layers)
    path = random_llama(spec, dtype="bfloat16")
    model_bytes = weights_bytes(path, getattr(torch, DTYPE))
    full_bytes = SIZES["1b"].params() * torch.empty((), dtype=getattr(torch, DTYPE)).element_size()
    with tempfile.TemporaryDirectory(prefix="scale-cpu-", dir=args.work) as tmp:
        work = Path(tmp)
        threads = args.threads
        builds = {v: run_stage(work, "build", path, work / f"cache-{v}", variant=v, threads=threads)
                  for v in ("unstreamed", "streamed")}  # fmt: skip
        found = run_stage(work, "search", path, work / "cache-streamed", threads=threads)
        (work / "levels.json").write_text(json.dumps(found["levels"]))
        exports = {v: run_stage(work, "export", path, work / f"cache-{v}", variant=v, threads=threads,
                                levels=work / "levels.json", out_dir=work / f"out-{v}")
                   for v in ("unstreamed", "streamed")}  # fmt: skip
        identical = {name: same_tree(work / "out-unstreamed" / name, work / "out-streamed" / name)
                     for name in ("model", "model.gguf")}  # fmt: skip
        identical["supernet_cache"] = same_tree(work / "cache-unstreamed", work / "cache-streamed")
        depth = depth_series(work, builds["streamed"], args.depth_models, threads)
    return {"model": str(path), "model_bytes": model_bytes, "dtype": DTYPE, "short_search": SHORT_SEARCH,
            "builds": builds, "search": found, "exports": exports, "byte_identical": identical, "depth": depth,
            "stream_peak_rss_vs_model_bytes": builds["streamed"]["peak_rss_bytes"] / model_bytes,
            "unstreamed_peak_rss_vs_model_bytes": builds["unstreamed"]["peak_rss_bytes"] / model_bytes,
            "stream_time_vs_unstreamed": builds["streamed"]["load_build_s"] / builds["unstreamed"]["load_build_s"],
            "depth_r2": depth["seconds_fit"]["r2"],
            # a cut model (--layers): the streamed peak holds one layer whatever the depth, so over the full model
            "full_depth_model_bytes": full_bytes,
            "stream_peak_rss_vs_full_depth_model_bytes": builds["streamed"]["peak_rss_bytes"] / full_bytes}  # fmt: skip


def table_cpu(result: dict) -> str:
    """The per-stage table (seconds, peak RSS GiB, cache MiB) and the headline ratios."""
    from bench.common import markdown_table

    gib = 2**30
    rows = []
    for variant in ("unstreamed", "streamed"):
        build, export = result["builds"][variant], result["exports"][variant]
        rows.append(
            [
                f"build, {variant}",
                f"{build['load_s']:.1f} + {build['build_s']:.1f}",
                f"{build['peak_rss_bytes'] / gib:.2f}",
                f"{build['cache_bytes'] / 2**20:.1f}",
            ]
        )
        rows.append([f"export, {variant}", f"{export['model_dir_s']:.1f} + {export['gguf_s']:.1f} gguf",
                     f"{export['peak_rss_bytes'] / gib:.2f}", "-"])  # fmt: skip
    found = result["search"]
    rows.insert(2, ["search (shortened), whole model", f"{found['s']:.1f}", f"{found['peak_rss_bytes'] / gib:.2f}",
                    "-"])  # fmt: skip
    table = markdown_table(["stage", "seconds", "peak RSS GiB", "cache MiB"], rows)
    depth = ", ".join(f"{r['layers']}: {r['s']:.0f} s" for r in result["depth"]["rows"])
    return (
        f"{table}\n\nmodel {result['model_bytes'] / gib:.2f} GiB in {result['dtype']}; "
        f"stream_peak_rss_vs_model_bytes {result['stream_peak_rss_vs_model_bytes']:.3f} (<= 0.35), "
        f"stream_time_vs_unstreamed {result['stream_time_vs_unstreamed']:.3f} (<= 1.15), "
        f"depth_r2 {result['depth_r2']:.4f} (>= 0.98; {depth}); byte-identical: {result['byte_identical']}"
    )


if __name__ == "__main__":
    raise SystemExit(stage_main())
