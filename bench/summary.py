"""The headline figures of issue 7 from the benchmarks' result files, against their targets.

- ``prefill_speedup_vs_ideal``: (t_dense / t_pruned) / (F_dense / F_pruned), prefill of 8 x 512 tokens,
  keep 0.5, searched allocation, random 0.1B Llama (``speed.json``); target >= 0.85.
- ``scoring_cost_vs_forward``: switch + ``kl`` score of an offspring over a bare forward of its
  materialised model on the same tokens, median over offspring, 0.1B (``scoring.json``); target <= 1.2.
- ``build_peak_mem_vs_model_bytes``: peak RSS of the supernet build over the bf16 model's bytes, 1B
  (``memory.json``); target <= 1.5.
- ``layers_slope_r2``: r^2 of the line through supernet build time against 4-32 layers
  (``growth.json``); linear growth, quoted with ``trial_layers_slope_r2`` for search time per trial.
- ``build_seconds_8b``, ``peak_gpu_mem_vs_model_bytes_8b``, ``scoring_cost_vs_forward_8b``,
  ``search_1000_trials_seconds_8b``: the Llama-3.1-8B layout on one GPU (``scale.json``, issue 17);
  targets 15 minutes, 1.2 and one hour (the memory target, 1.3x model bytes plus one layer's statistics,
  is checked in the benchmark's table, since the statistics' size depends on the layout).

Each figure keeps the reference-model variant next to it where there is one.
"""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = {  # figure -> (comparison, bound)
    "prefill_speedup_vs_ideal": (">=", 0.85),
    "scoring_cost_vs_forward": ("<=", 1.2),
    "build_peak_mem_vs_model_bytes": ("<=", 1.5),
    "layers_slope_r2": (">=", 0.98),
    "trial_layers_slope_r2": (">=", 0.98),
    # issue 17, the 8B layout on one H200 (bench.scale --device cuda)
    "build_seconds_8b": ("<=", 15 * 60),
    "scoring_cost_vs_forward_8b": ("<=", 1.2),
    "search_1000_trials_seconds_8b": ("<=", 3600),
}
SCALE_KEYS = ("build_seconds_8b", "peak_gpu_mem_vs_model_bytes_8b", "scoring_cost_vs_forward_8b",
              "search_1000_trials_seconds_8b", "build_seconds_70b_projected",
              "search_1000_trials_seconds_70b_projected")  # fmt: skip
SPEED_MODEL, REFERENCE_MODEL = "random-llama-0.1b", "strata-reference-default"


def _load(results: Path, name: str, quick: bool) -> dict | None:
    path = results / f"{name}{'-quick' if quick else ''}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _prefill(speed: dict, model: str, keep: float = 0.5, batch: int = 8) -> dict | None:
    for m in speed["models"]:
        for k in m["keeps"]:
            if m["model"] == model and k["keep"] == keep:
                return next(r for r in k["runs"] if r["phase"] == "prefill" and r["batch"] == batch)
    return None


def _scoring(scoring: dict, model: str) -> dict | None:
    return next((m for m in scoring["models"] if m["model"] == model), None)


def figures(results: Path, quick: bool) -> dict:
    """Every headline figure found in the result files (a missing benchmark leaves its figures out)."""
    out: dict = {}
    if speed := _load(results, "speed", quick):
        for suffix, model in (("", SPEED_MODEL), ("_reference", REFERENCE_MODEL)):
            if row := _prefill(speed, model):
                out[f"prefill_speedup_vs_ideal{suffix}"] = row["fraction_of_ideal"]
                out[f"prefill_speedup{suffix}"] = row["speedup"]
                out[f"prefill_ideal{suffix}"] = row["ideal"]
    if scoring := _load(results, "scoring", quick):
        for suffix, model in (("", SPEED_MODEL), ("_reference", REFERENCE_MODEL)):
            if row := _scoring(scoring, model):
                out[f"scoring_cost_vs_forward{suffix}"] = row["vs_bare"]["score"]
                out[f"scoring_cost_vs_forward_cold{suffix}"] = row["vs_bare"]["cold"]
                out[f"scoring_cost_vs_forward_unoptimised{suffix}"] = row["vs_bare"]["unoptimised"]
    if memory := _load(results, "memory", quick):
        by_size = {r["size"]: r for r in memory["sizes"]}
        if "1b" in by_size:
            out["build_peak_mem_vs_model_bytes"] = by_size["1b"]["peak_over_model_bytes"]
        for name, p in memory["projection"]["models"].items():
            out[f"build_peak_mem_vs_model_bytes_{name}_projected"] = p["peak_over_model_bytes"]
    if growth := _load(results, "growth", quick):
        fits = growth["fits"]
        out["layers_slope_r2"] = fits["layers"]["build_s"]["r2"]
        out["layers_slope_s_per_layer"] = fits["layers"]["build_s"]["slope"]
        out["trial_layers_slope_r2"] = fits["layers"]["trial_s"]["r2"]
        out["trial_layers_slope_s_per_layer"] = fits["layers"]["trial_s"]["slope"]
        out["tokens_build_slope_r2"] = fits["tokens"]["build_s"]["r2"]
        out["tokens_trial_slope_r2"] = fits["tokens"]["trial_s"]["r2"]
    if scale := _load(results, "scale", quick):
        out.update({k: scale[k] for k in SCALE_KEYS if k in scale})
        for layout in scale["layouts"]:  # the CPU figures of any layout run
            default = next((b for b in layout["builds"] if b["calibration"] == "default"), None)
            if default is not None:
                name = f"build_seconds_full_depth_{layout['layout']}_{scale['config']['device']}"
                out[name] = default["build_s_full_depth"]
            if "precision" in layout:
                out[f"float32_solve_tau_min_{layout['layout']}"] = layout["precision"]["tau_min"]
    return out


def targets(values: dict) -> dict:
    """Each target figure found: its value, the bound, and whether it is met."""
    out = {}
    for name, (op, bound) in TARGETS.items():
        if name in values:
            value = values[name]
            met = value >= bound if op == ">=" else value <= bound
            out[name] = {"value": value, "target": f"{op} {bound}", "met": met}
    return out


def markdown(values: dict, met: dict, runs: dict, *, quick: bool, wall_s: float, machine: dict) -> str:
    """The summary table, then each benchmark's own table as it printed it."""
    header = (f"{machine['cpu']}, {machine['cores_logical']} logical cores, torch {machine['torch']}, transformers "
              f"{machine['transformers']}, load average {machine['load_average_1m']:.1f} at the start; "
              f"{wall_s / 60:.1f} min in all.")  # fmt: skip
    lines = [f"# strata benchmarks{' (--quick)' if quick else ''}", "", header, "",
             "| figure | value | target | met |", "|---|---|---|---|"]  # fmt: skip
    for name, value in values.items():
        target = met.get(name)
        cells = (target["target"], "yes" if target["met"] else "**no**") if target else ("", "")
        lines.append(f"| {name} | {value:.4g} | {cells[0]} | {cells[1]} |")
    for name, run in runs.items():
        status = "" if run["returncode"] == 0 else f" — **failed (exit {run['returncode']})**"
        lines += ["", f"## {name} ({run['wall_s']:.0f} s){status}", "", run["stdout"].strip() or "(no table)"]
    return "\n".join(lines) + "\n"
