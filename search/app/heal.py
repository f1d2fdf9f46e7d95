"""strata-heal: train a finished run's pruned model toward its dense model (search/heal), beside its outputs.

    strata-heal RUN_DIR [key=value ...] [--quiet]          e.g.  strata-heal outputs/... tokens=200000 method=lora
    torchrun --nproc_per_node 8 -m search.app.heal RUN_DIR tokens=...         (FSDP2 over the processes)

Keys are HealConfig's (``heal.tokens`` or ``tokens``; README.md's configuration table), over the ``heal:`` node the
run recorded, plus ``device=`` (default: the run's). The run's ``.hydra/config.yaml`` gives the dense model
(``model.path``, or the built-in reference model) and the data (train split for training, its held-out windows
for perplexity); the student is ``RUN_DIR/model/``. Writes ``RUN_DIR/healed/`` (model/'s layout: it reloads
without strata and exports with ``strata-export``), adds ``heal`` to metrics.json, rebuilds report.html and prints
the end table with a ``searched + healed`` row. Checkpoints go to ``RUN_DIR/heal-state/`` (deleted when done): the
same command after a kill resumes there. User errors end with one ``error: ...`` line and exit status 2, before
anything is written. A run with ``heal.tokens > 0`` heals at its end by the same code (:func:`heal_run`).
"""

from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from search.app.args import ArgumentParser, fail, interrupted
from search.app.outputs import HEAL_STATE
from search.heal.config import HealConfig
from supernet.errors import UsageError

if TYPE_CHECKING:
    import torch

    from supernet.io.data import DataConfig
    from supernet.io.loading import ModelConfig

log = logging.getLogger(__name__)

HEALED = "healed"  # the healed model, model/'s layout
STATE = HEAL_STATE  # checkpoints and the teacher cache while healing
EXTRA_KEYS = ("device",)  # keys beside HealConfig's


def heal_config(overrides: list[str], recorded: dict | None) -> tuple[HealConfig, dict]:
    """HealConfig from the run's recorded ``heal:`` node and ``key=value`` overrides (``heal.`` optional), and the
    extra keys given (``device``)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    extra, dotlist = {}, []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.removeprefix("heal.")
        if not sep or not key:
            raise UsageError(f"{item!r} is no key=value override: e.g. tokens=200000 method=lora")
        if key in EXTRA_KEYS:
            extra[key] = value
        else:
            dotlist.append(f"{key}={value}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(HealConfig), recorded or {}, OmegaConf.from_dotlist(dotlist))
    except OmegaConfBaseException as exc:
        reason = str(exc).strip().splitlines()[0]
        raise UsageError(f"bad heal key or value ({reason}): the keys are in README.md's heal.* rows") from None
    return HealConfig(**OmegaConf.to_container(merged)), extra


@dataclass
class RunInputs:
    """What the run recorded that healing reads."""

    model: ModelConfig
    data: DataConfig
    seed: int
    device: str
    heal: dict | None  # the run's recorded heal: node


def run_inputs(run_dir: Path) -> RunInputs:
    """The run's model, data, seed, device and heal node, from ``.hydra/config.yaml``; refuses a directory without
    ``model/`` or a finished run, and a dense model that is gone."""
    from search.app.rundir import FINISHED, run_config
    from supernet.io.data import DataConfig, resolve_data_source
    from supernet.io.loading import ModelConfig

    if not run_dir.is_dir():
        raise UsageError(f"{run_dir} is not a directory: give a finished strata run's directory")
    if not (run_dir / "model" / "config.json").is_file():
        raise UsageError(f"{run_dir} holds no model/ (model/config.json): give the directory of a finished strata run")
    config = run_config(run_dir)
    if not config or not (run_dir / FINISHED).is_file():
        raise UsageError(f"{run_dir} holds no finished run (.hydra/config.yaml and {FINISHED}): run strata to the end "
                         "in it first")  # fmt: skip
    try:
        model, data = ModelConfig(**config.get("model", {})), DataConfig(**config.get("data", {}))
        resolve_data_source(model.path, data)
    except TypeError as exc:
        raise UsageError(f"{run_dir}/.hydra/config.yaml is no strata run config ({exc})") from None
    if model.path is not None and not Path(model.path).expanduser().is_dir():
        raise UsageError(f"the run's dense model model.path={model.path} is gone (the teacher and the perplexity "
                         "reference): restore it at that path")  # fmt: skip
    return RunInputs(model, data, int(config.get("seed", 0)), str(config.get("device", "cpu")), config.get("heal"))


def check_outputs(run_dir: Path) -> None:
    """Refuse ``healed/`` or ``heal-state/`` that strata did not write, and a directory that takes no file."""
    from search.app.outputs import check_writable, foreign_files

    check_writable("RUN_DIR", run_dir, "give a writable run directory", label=str(run_dir))
    foreign = [f for f in foreign_files(run_dir) if f.split("/")[0] in (HEALED, STATE)]
    if foreign:
        raise UsageError(f"{run_dir} holds {foreign[0]}, which strata did not write: move it away; nothing was deleted")


def heal_run(
    run_dir: Path,
    cfg: HealConfig,
    inputs: RunInputs,
    *,
    device: str,
    progress: bool,
    dense_ppl: float | None = None,
) -> dict:
    """Heal ``run_dir/model/`` toward the dense model and write ``run_dir/healed/``; returns metrics.json's ``heal``.

    The caller holds the run's lock (rank 0); under torchrun every process calls this, and only rank 0 measures
    and writes. Held-out perplexity before and after on the run's evaluation windows (``dense_ppl``: the dense
    model's, when the caller measured it on the same windows)."""
    from search.app.inputs import eval_tokens, resolve_model_path
    from search.app.outputs import claim_output, writing_output
    from search.heal.data import heal_windows
    from search.heal.distributed import rank_world
    from search.heal.train import heal_model
    from supernet.io.export import load_pruned, save_strata_model
    from supernet.io.loading import load_model
    from supernet.io.perplexity import perplexity

    rank = rank_world()[0]
    student, tokenizer = load_pruned(run_dir / "model", dtype=inputs.model.dtype, device=device)
    check_seq_len(student.config, cfg)
    windows = heal_windows(inputs.data, tokenizer, seq_len=cfg.seq_len, tokens=cfg.steps * cfg.batch_tokens,
                           seed=inputs.seed, min_windows=cfg.step_windows)  # fmt: skip
    held_out = eval_tokens(inputs.data, tokenizer).to(device)
    teacher = None
    if cfg.uses_teacher or dense_ppl is None:
        directory, _ = resolve_model_path(inputs.model, progress=progress)
        teacher = load_model(directory, dtype=inputs.model.dtype, device=device)[0]

    def ppl(model: torch.nn.Module) -> float:
        return perplexity(model, held_out, batch_size=inputs.data.batch_size, progress=progress)

    if dense_ppl is None:
        dense_ppl = ppl(teacher)
    before = ppl(student) if rank == 0 else None
    if rank == 0:
        claim_output(run_dir, STATE)
    result = heal_model(student, teacher if cfg.uses_teacher else None, windows, cfg, seed=inputs.seed,
                        state_dir=run_dir / STATE, eval_windows=held_out, progress=progress)  # fmt: skip
    if rank != 0:
        return {}
    after = ppl(student)
    with writing_output(run_dir, HEALED) as path:
        if path.exists():
            shutil.rmtree(path)  # an earlier heal's, replaced
        save_strata_model(student, tokenizer, path)
    log.info("healed model: held-out ppl %.3f (before %.3f, dense %.3f)", after, before, dense_ppl)
    return heal_entry(cfg, result, before=before, after=after, dense_ppl=dense_ppl)


def check_seq_len(config, cfg: HealConfig) -> None:
    limit = getattr(config, "max_position_embeddings", None)
    if limit is not None and cfg.seq_len > limit:
        raise UsageError(f"heal.seq_len={cfg.seq_len} is beyond the model's {limit} positions: use <= {limit}")


def heal_entry(cfg: HealConfig, result, *, before: float, after: float, dense_ppl: float) -> dict:
    """metrics.json's ``heal``: what was trained, how fast, and the held-out perplexities."""
    from dataclasses import asdict

    return {
        "tokens": result.tokens,
        "steps": result.steps,
        "seconds": result.seconds,
        "tokens_per_s": round(result.tokens / result.seconds, 1) if result.seconds > 0 else None,
        "method": cfg.method,
        "teacher": cfg.teacher if cfg.uses_teacher else "none",
        "ppl_before": before,
        "ppl_after": after,
        "dense_ppl": dense_ppl,
        "curve": result.curve,
        "evals": result.evals,
        "config": asdict(cfg),
    }


def finish_heal(run_dir: Path) -> None:
    """Delete the checkpoints once the healed model and metrics.json are written (and drop them from the record)."""
    from search.app.outputs import record_output

    shutil.rmtree(run_dir / STATE, ignore_errors=True)
    record_output(run_dir, STATE)


def heal_finished_run(run_dir: Path, cfg: HealConfig, inputs: RunInputs, *, device: str, progress: bool) -> dict:
    """strata-heal's work (rank 0 holding the lock): heal, then metrics.json, report.html; returns metrics."""
    from search.app.outputs import writing_output
    from search.app.report import write_report
    from search.app.rundir import FINISHED, read_json, storage_url
    from supernet.io.files import finite_json, write_json

    metrics = read_json(run_dir / FINISHED)
    dense_ppl = (metrics.get("dense") or {}).get("ppl")
    entry = heal_run(run_dir, cfg, inputs, device=device, progress=progress, dense_ppl=dense_ppl)
    if not entry:
        return metrics  # another process of a torchrun: rank 0 writes
    metrics["heal"] = entry
    written, _ = finite_json(metrics)
    with writing_output(run_dir, "report.html"):
        write_report(run_dir, storage_url=storage_url(run_dir), metrics=written)
    with writing_output(run_dir, FINISHED) as path:
        write_json(path, metrics)
    finish_heal(run_dir)
    return metrics


def main(argv: list[str] | None = None) -> None:
    """strata-heal (see the module docstring); user errors end with ``error: ...`` and exit 2."""
    parser = ArgumentParser(prog="strata-heal", description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("run_dir", type=Path, help="a finished strata run's directory")
    parser.add_argument("overrides", nargs="*", help="heal keys, key=value (tokens=200000 method=lora ...)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        metrics = heal_command(args.run_dir.expanduser(), args.overrides, progress=not args.quiet)
    except UsageError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        interrupted("strata-heal", f"in {args.run_dir}; run the same command again to resume from its last checkpoint")
    if metrics is not None:
        from search.app.outcome import outcome_table

        print(outcome_table(metrics, args.run_dir))


def heal_command(run_dir: Path, overrides: list[str], *, progress: bool) -> dict | None:
    """Check everything, then heal under the run's lock (rank 0; the other processes of a torchrun only train).
    Returns metrics.json's new content on rank 0, None on the others."""
    from search.app.outputs import run_lock
    from search.heal.distributed import init_from_env
    from supernet.io.loading import check_device

    inputs = run_inputs(run_dir)
    cfg, extra = heal_config(overrides, inputs.heal)
    if cfg.tokens <= 0:
        raise UsageError(f"heal.tokens={cfg.tokens}: strata-heal trains on tokens > 0, e.g. tokens=200000")
    device = extra.get("device", inputs.device)
    check_device(device, available=True)
    rank, world = init_from_env(device)
    cfg.check_batch(world)
    if rank != 0:
        heal_run(run_dir, cfg, inputs, device=device, progress=False, dense_ppl=0.0)
        return None
    check_outputs(run_dir)
    with run_lock(run_dir):
        return heal_finished_run(run_dir, cfg, inputs, device=device, progress=progress)


if __name__ == "__main__":
    main()
