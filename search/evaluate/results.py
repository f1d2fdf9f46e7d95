"""eval.json and the table: lm-evaluation-harness's results of every model side by side.

eval.json::

    {"lm_eval": "0.4.13", "settings": {"tasks", "num_fewshot", "limit", "batch_size"}, "models": [...],
     "results": {task: {metric: {model: {"value": v, "stderr": s | null}}}},
     "samples": {task: documents scored}, "task_hashes": {task: sha256 of its config as lm-eval ran it}}

A metric is lm-eval's name (``acc``, ``acc_norm``, ``bits_per_byte``...), with `` (filter)`` added for a
filter other than ``none``; ``stderr`` is null where lm-eval gives none (``N/A``: perplexities).
"""

from __future__ import annotations

import math
from typing import Any

from supernet.io.files import json_hash

STDERR = "_stderr"
NO_FILTER = "none"


def metric_name(key: str) -> tuple[str, str] | None:
    """``"acc,none"`` -> (``"acc"``, ``"acc_stderr,none"``); None for what is no metric (alias, stderr)."""
    if "," not in key:
        return None
    metric, filter_name = key.split(",", 1)
    if metric.endswith(STDERR):
        return None
    name = metric if filter_name == NO_FILTER else f"{metric} ({filter_name})"
    return name, f"{metric}{STDERR},{filter_name}"


def number(value: Any) -> float | None:
    """A finite float, or None (lm-eval writes ``"N/A"`` where it has no stderr)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def task_metrics(entry: dict) -> dict[str, dict]:
    """One task's entry of lm-eval's ``results``: metric -> {"value", "stderr"}."""
    out = {}
    for key, value in entry.items():
        names = metric_name(key)
        if names is not None and number(value) is not None:
            out[names[0]] = {"value": number(value), "stderr": number(entry.get(names[1]))}
    return out


def build_eval(per_model: dict[str, dict[str, dict]], *, version: str, settings: dict) -> dict:
    """eval.json's content from ``per_model[model][task]``, lm-eval's results dict of that model on that task."""
    results: dict[str, dict[str, dict]] = {}
    samples, hashes = {}, {}
    for model, by_task in per_model.items():
        for raw in by_task.values():
            for task, entry in raw["results"].items():
                for metric, value in task_metrics(entry).items():
                    results.setdefault(task, {}).setdefault(metric, {})[model] = value
            for task, config in raw.get("configs", {}).items():
                hashes.setdefault(task, json_hash(config))
            for task, count in raw.get("n-samples", {}).items():
                samples.setdefault(task, count.get("effective", count.get("original")))
    return {"lm_eval": version, "settings": settings, "models": list(per_model), "results": results,
            "samples": samples, "task_hashes": hashes}  # fmt: skip


def table(evaluation: dict) -> str:
    """Task, metric, each model's value and each pruned model's ratio to dense, as aligned text."""
    models = evaluation["models"]
    ratios = [m for m in models if m != "dense"] if "dense" in models else []
    header = ["task", "metric", *models, *(f"{m}/dense" for m in ratios)]
    rows = []
    for task, metrics in evaluation["results"].items():
        for metric, by_model in metrics.items():
            values = [(by_model.get(m) or {}).get("value") for m in models]
            dense = (by_model.get("dense") or {}).get("value")
            cells = [f"{v:.4f}" if v is not None else "-" for v in values]
            cells += [f"{by_model[m]['value'] / dense:.3f}" if dense and m in by_model else "-" for m in ratios]
            rows.append([task, metric, *cells])
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(row, widths,
             strict=True))) for row in [header, *rows]]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)
