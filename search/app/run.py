"""The main job: load, calibrate, choose an allocation, prune in place, measure, save.

Writes into the run directory: ``model/`` (and ``model.gguf`` with ``export.gguf=true``), ``allocation.json``,
``pareto.json`` (multi-objective), ``healed/`` (with ``heal.tokens > 0``: model/ distilled, search/app/heal.py),
``eval.json`` (with ``eval.tasks``: lm-eval on every model, search/app/eval.py),
``manifest.json``, ``report.html`` and, last, ``metrics.json``, the mark of a finished run. Outputs are written
only once everything they depend on succeeded, each atomically, and recorded as strata's (``search.app.rundir``).
The run holds the directory's lock throughout; a rerun of an unfinished directory (killed, failed) deletes what the
earlier attempt wrote, keeps its study to resume, and writes the rest.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import transformers

# search.app.pipeline at the top, not in the search branch: optuna.artifacts keeps a failed optional import's
# traceback in a module global, which would pin the frames (model, evaluator) of the run() that imported it
from search.app.inputs import eval_tokens, fitness_tokens, load_inputs, selection_heal_windows, train_windows
from search.app.manifest import build_manifest
from search.app.outputs import RESUMED, prepare_run_dir, record_output, run_lock, writing_output
from search.app.pipeline import run_search
from search.app.rundir import FINISHED
from search.study import JOURNAL
from supernet.io.export import save_pruned
from supernet.io.export.gguf import GGUF_FILE, check_exportable, export_gguf
from supernet.io.files import finite_json, write_json
from supernet.io.perplexity import perplexity
from supernet.kinds import MLP
from supernet.space.allocators import ALLOCATORS, allocate
from supernet.space.budget import budget_grid
from supernet.space.params import block_params, count_params
from supernet.variants.build import build_supernet
from supernet.variants.flap_baseline import FLAP_METHOD, flap_baseline
from supernet.variants.switch import Switcher

if TYPE_CHECKING:
    from search.app.config import RunConfig
    from search.app.inputs import Inputs
    from search.app.pipeline import SearchResult
    from supernet.space.allocation import Allocation
    from supernet.space.grid import LevelGrid
    from supernet.variants.build import Supernet

log = logging.getLogger(__name__)


def dense_bytes(model) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def measured(model, adapter, held_out: torch.Tensor, cfg: RunConfig) -> dict:
    """Parameters, block parameters and held-out perplexity of the model as it stands."""
    return {
        "params": count_params(model),
        "block_params": block_params(model, adapter),
        "ppl": perplexity(model, held_out, batch_size=cfg.data.batch_size, progress=cfg.progress),
    }


def search_and_baselines(cfg: RunConfig, model, adapter, switcher, net, grid, calib, held_out, *, run_dir: Path,
                         fitness=None, heal_windows=None, manifest: dict | None = None,
                         ) -> tuple[SearchResult, dict]:  # fmt: skip
    """Search the allocation, and measure the baselines on the same held-out windows: the uniform
    allocation on the same supernet, and FLAP's own method (supernet/space/flap.py: its global allocation,
    its units and its bias; what the grid approximates is recorded)."""
    starts = {name: allocate(name, net, grid, cfg.budget.keep) for name in ALLOCATORS}
    flap = flap_baseline(net, switcher)
    result = run_search(
        cfg, model=model, adapter=adapter, switcher=switcher, supernet=net, grid=grid, calib=calib,
        warm_starts=starts, run_dir=run_dir, fitness=fitness, heal_windows=heal_windows, manifest=manifest,
    )  # fmt: skip
    evaluator = result.evaluator
    baselines = {}
    try:
        evaluator.use(net)  # the uniform baseline lives on the first (coarse) grid
        fitness_value = evaluator.score(starts["uniform"], evaluator.stages - 1)
        net.apply(switcher, starts["uniform"])
        baselines["uniform"] = {**measured(model, adapter, held_out, cfg), cfg.proxy.name: fitness_value,
                                "supernet": f"{cfg.supernet.criterion} + {cfg.supernet.compensation}"}  # fmt: skip
        flap.install(switcher)
        baselines["flap_global"] = {**measured(model, adapter, held_out, cfg), "method": FLAP_METHOD,
                                    "approximated": flap.approximated,
                                    "allocation": flap.grid.allocation(flap.levels).to_json()}  # fmt: skip
    finally:
        evaluator.close()  # a Ray pool's actors go; the in-process evaluator has nothing to release
    return result, baselines


def budget_entry(cfg: RunConfig, grid: LevelGrid, levels: list[int]) -> dict:
    """metrics.json's budget: what is counted, the fraction asked, the cost of the dense model, target and
    result, and the budget rule's slack (one MLP step's cost)."""
    entry = {"kind": cfg.budget.kind, "keep": cfg.budget.keep}
    if cfg.budget.kind == "flops":
        entry["seq_len"] = cfg.budget.seq_len
    entry["dense_cost"], entry["target_cost"], entry["cost"] = grid.dense_cost(), grid.budget, grid.cost(levels)
    entry["slack"] = grid.step_cost(MLP)  # the rule: target_cost - slack < cost <= target_cost
    return entry


def run(cfg: RunConfig, out_dir: Path) -> dict:
    """Prune by ``cfg`` and write the run's outputs to ``out_dir``; returns metrics.json's content.

    Holds ``out_dir``'s lock from before any work to the end, and first makes the directory ready
    (``search.app.outputs.prepare_run_dir``: refuses a directory in use, one holding files strata did not write
    and, without ``overwrite``, a finished run; clears what an unfinished attempt wrote, its study aside)."""
    out_dir = Path(out_dir)
    with run_lock(out_dir):
        prepare_run_dir(out_dir, overwrite=bool(getattr(cfg, "overwrite", False)))
        metrics, manifest, start = locked_run(cfg, out_dir)  # its model is released before healing and evaluation
        gc.collect()  # the run's model, if a reference cycle still holds it, goes before the next models load
        if cfg.heal.tokens > 0:  # healed/ and metrics.json's heal, before the evaluation (which scores healed/ too)
            heal_in_run(cfg, out_dir, metrics, dense_ppl=metrics["dense"]["ppl"])
        if cfg.eval.tasks:  # eval.json (recorded in the manifest and the report), before metrics.json
            from search.app.eval import evaluate_run, manifest_entry, write_eval

            evaluation = evaluate_run(out_dir, cfg.eval, run_cfg=cfg, progress=cfg.progress)
            write_eval(out_dir, evaluation)
            manifest["eval"] = manifest_entry(evaluation)
        write_run_records(cfg, out_dir, manifest, metrics=metrics, started=start)
        if cfg.heal.tokens > 0:
            from search.app.heal import finish_heal

            finish_heal(out_dir)
        return metrics


def locked_run(cfg: RunConfig, out_dir: Path) -> tuple[dict, dict, float]:
    """:func:`run`'s work up to its outputs, its directory locked and ready: metrics.json's content, the manifest
    begun and the start time (the records are written by :func:`run`)."""
    start = time.time()
    inputs, held_out = load_run_inputs(cfg)
    model, tokenizer, adapter = inputs.model, inputs.tokenizer, inputs.adapter

    dense_total = dense_bytes(model)
    dense = measured(model, adapter, held_out, cfg)
    log.info("dense model: %d parameters, held-out ppl %.3f", dense["params"], dense["ppl"])

    grid = budget_grid(model, adapter, cfg.budget, cfg.supernet)
    calib, fitness = train_windows(cfg.data, tokenizer, seed=cfg.seed, fitness_tokens=fitness_tokens(cfg))
    heal_windows = selection_heal_windows(cfg, tokenizer)  # search.heal_tokens > 0: candidates' training windows
    manifest = build_manifest(cfg, started=start, calib=calib, held_out=held_out)
    net = build_supernet(model, adapter, calib, cfg.supernet, grid, weights=inputs.weights, progress=cfg.progress)
    switcher = Switcher(model, adapter)
    levels = allocate(cfg.allocator, net, grid, cfg.budget.keep)
    searched, baselines = None, None
    if cfg.search.sampler != "none":
        claim_study(cfg, out_dir)
        searched, baselines = search_and_baselines(cfg, model, adapter, switcher, net, grid, calib, held_out,
                                                   run_dir=out_dir, fitness=fitness, heal_windows=heal_windows,
                                                   manifest=manifest)  # fmt: skip
        levels, grid, net = searched.levels, searched.grid, searched.supernet
    allocation = grid.allocation(levels)
    net.apply(switcher, levels)
    pruned = measured(model, adapter, held_out, cfg)
    log.info("pruned model: %d parameters, held-out ppl %.3f", pruned["params"], pruned["ppl"])

    metrics = metrics_entry(cfg, inputs.name, grid, levels, net, dense=dense, pruned=pruned, dense_total=dense_total,
                            held_out=held_out, start=start, searched=searched, baselines=baselines,
                            fitness=fitness)  # fmt: skip
    pareto = None if searched is None else searched.pareto
    write_outputs(cfg, out_dir, model, switcher, tokenizer, metrics=metrics, allocation=allocation, pareto=pareto)
    return metrics, manifest, start


def heal_in_run(cfg: RunConfig, out_dir: Path, metrics: dict, *, dense_ppl: float) -> None:
    """``heal.tokens > 0``: heal model/ into healed/ as strata-heal does (search/app/heal.py), into ``metrics``."""
    from search.app.heal import RunInputs, heal_run

    inputs = RunInputs(cfg.model, cfg.data, cfg.seed, cfg.device, None)
    metrics["heal"] = heal_run(out_dir, cfg.heal, inputs, device=cfg.device, progress=cfg.progress,
                               dense_ppl=dense_ppl)  # fmt: skip


def claim_study(cfg: RunConfig, out_dir: Path) -> None:
    """Record the study's files (the journal, unless ``search.storage`` names another storage, and the trial
    artifacts) as strata's before the search writes them (whole: a resumed search adds to them)."""
    from search.app.outputs import claim_output

    for name in RESUMED:
        if name != JOURNAL or cfg.search.storage is None:
            claim_output(out_dir, name)


def load_run_inputs(cfg: RunConfig) -> tuple[Inputs, torch.Tensor]:
    """The model, tokenizer, adapter and weights (``search.app.inputs.load_inputs``) and the held-out windows,
    refusing a model the GGUF export cannot take before any work is done."""
    if not cfg.progress:  # transformers' own bars (loading weights, writing shards) follow the quiet switch too
        transformers.utils.logging.disable_progress_bar()
    inputs = load_inputs(cfg.model, cfg.data, device=cfg.device, attn_unit=cfg.supernet.attn_unit, seed=cfg.seed,
                         expert_unit=cfg.supernet.expert_unit, progress=cfg.progress,
                         placement=cfg.placement)  # fmt: skip
    if cfg.export.gguf:  # refuse a model llama.cpp cannot run before the hours of work, not after
        check_exportable(inputs.model.config, inputs.tokenizer)
    if cfg.heal.tokens > 0:
        from search.app.heal import check_seq_len

        check_seq_len(inputs.model.config, cfg.heal)
    held_out = eval_tokens(cfg.data, inputs.tokenizer).to(cfg.device)
    return inputs, held_out


def metrics_entry(
    cfg: RunConfig,
    name: str,
    grid: LevelGrid,
    levels: list[int],
    net: Supernet,
    *,
    dense: dict,
    pruned: dict,
    dense_total: int,
    held_out: torch.Tensor,
    start: float,
    searched: SearchResult | None,
    baselines: dict | None,
    fitness: torch.Tensor | None,
) -> dict:
    """metrics.json's content (model.gguf's entry aside): the model, the budget, the dense and pruned
    measurements, how the allocation was chosen, the supernet, the held-out windows, the seconds so far and,
    after a search, its entry (with the ``fitness`` windows' count) and the baselines."""
    metrics = {
        "model": name,
        "budget": budget_entry(cfg, grid, levels),
        "dense": dense,
        "pruned": pruned,
        "allocation": cfg.allocator if searched is None else "search",
        "supernet": {
            "criterion": cfg.supernet.criterion,
            "compensation": cfg.supernet.compensation,
            "propagate": cfg.supernet.propagate,
            "from_cache": net.from_cache,
            "cache_bytes": net.cache_bytes,
            "dense_bytes": dense_total,
            "build_seconds": round(net.build_seconds, 2),
        },
        "eval": {"seq_len": cfg.data.eval_seq_len, "windows": int(held_out.shape[0])},
        "seconds": round(time.time() - start, 2),
    }
    if searched is not None:
        metrics["search"] = {**searched.info, "fitness": cfg.search.fitness, "resample": cfg.search.resample,
                             "fitness_windows": int(fitness.shape[0])}  # fmt: skip
        metrics["baselines"] = baselines
    return metrics


def write_outputs(
    cfg: RunConfig,
    out_dir: Path,
    model,
    switcher: Switcher,
    tokenizer,
    *,
    metrics: dict,
    allocation: Allocation,
    pareto: dict | None,
) -> None:
    """The pruned model (and model.gguf, recorded in ``metrics``), allocation.json and, in multi-objective
    mode, pareto.json, in that order, each recorded as strata's; metrics.json comes last
    (:func:`write_run_records`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with writing_output(out_dir, "model") as path:
        save_pruned(model, switcher.shapes(), tokenizer, path)
    if cfg.export.gguf:
        with writing_output(out_dir, GGUF_FILE) as path:
            gguf = export_gguf(out_dir / "model", path, dtype=cfg.export.gguf_dtype, progress=cfg.progress)
        metrics["gguf"] = {"file": GGUF_FILE, "dtype": cfg.export.gguf_dtype, "bytes": gguf.stat().st_size}
    with writing_output(out_dir, "allocation.json") as path:
        write_json(path, allocation.to_json())
    if pareto is not None:
        with writing_output(out_dir, "pareto.json") as path:
            write_json(path, pareto)


def write_run_records(cfg: RunConfig, out_dir: Path, manifest: dict, *, metrics: dict, started: float) -> None:
    """manifest.json (also as the studies' user attributes) and report.html once the outputs are written, then
    the study's files recorded as they stand and, last, metrics.json: a run is finished once it exists."""
    from search.app.manifest import finish_manifest, write_manifest
    from search.app.report import write_report
    from search.app.rundir import run_studies

    written, _ = finite_json(metrics)  # what metrics.json will hold
    with writing_output(out_dir, "manifest.json"):
        write_manifest(out_dir, finish_manifest(manifest, started=started), storage_url=cfg.search.storage,
                       studies=run_studies(out_dir, written))  # fmt: skip
    with writing_output(out_dir, "report.html"):
        write_report(out_dir, storage_url=cfg.search.storage, metrics=written)
    for name in RESUMED:
        record_output(out_dir, name)
    with writing_output(out_dir, FINISHED) as path:
        write_json(path, metrics)
