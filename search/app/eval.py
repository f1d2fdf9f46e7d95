"""strata-eval: evaluate a run's models with lm-evaluation-harness, as the pruning papers report them, offline.

    strata-eval RUN_DIR --tasks T1,T2 [--include-path DIR] [--num-fewshot K] [--limit N] [--batch-size B]

evaluates the dense model, ``uniform``, ``flap_global`` (rebuilt from the run, search/app/run_models.py), the
searched model (``RUN_DIR/model``) and the healed one (``RUN_DIR/healed``) where it exists, on the same tasks
with the same settings, each with the tokenizer it really has. Tasks are lm-eval's (their data in the local
Hugging Face cache), strata's shipped ``strata_nextline`` and ``strata_heldout_ppl``, or YAMLs under
``--include-path``; nothing is downloaded. Writes ``RUN_DIR/eval.json`` (per task, metric and model: value and
stderr; lm-eval's version; the task configs' hashes), adds it to ``manifest.json`` and ``report.html``, and
prints the table. A run does the same after its outputs with ``eval.tasks=[...]``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from search.app.args import ArgumentParser, fail
from search.app.rundir import EVAL, FINISHED, read_json
from supernet.errors import UsageError

if TYPE_CHECKING:
    from search.app.config import RunConfig
    from search.evaluate.config import EvalConfig

DESCRIPTION = " ".join(__doc__.split("\n\n")[0].split())  # the first paragraph (``--help``)


def evaluate_run(run_dir: Path, cfg: EvalConfig, *, run_cfg: RunConfig | None = None, progress: bool = True) -> dict:
    """eval.json's content for the run in ``run_dir`` (its config: ``run_cfg``, else ``.hydra/config.yaml``)."""
    from search.app.run_models import config_of, model_names, run_models
    from search.evaluate.suite import evaluate_models

    run_dir = Path(run_dir)
    run_cfg = config_of(run_dir) if run_cfg is None else run_cfg
    names = model_names(run_cfg, run_dir)
    return evaluate_models(run_models(run_cfg, run_dir), names, cfg, progress=progress)


def manifest_entry(evaluation: dict) -> dict:
    """manifest.json's ``eval``: lm-eval's version, the settings and the task configs' hashes."""
    return {key: evaluation[key] for key in ("lm_eval", "settings", "task_hashes")}


def write_eval(run_dir: Path, evaluation: dict) -> None:
    """``RUN_DIR/eval.json``, written atomically and recorded as strata's."""
    from search.app.outputs import writing_output
    from supernet.io.files import write_json

    with writing_output(run_dir, EVAL) as path:
        write_json(path, evaluation)


def record_eval(run_dir: Path, evaluation: dict) -> None:
    """eval.json, then manifest.json's ``eval`` entry (also on the run's studies) and report.html rebuilt."""
    from search.app.manifest import MANIFEST, write_manifest
    from search.app.outputs import writing_output
    from search.app.report import write_report
    from search.app.rundir import storage_url

    write_eval(run_dir, evaluation)
    manifest = read_json(run_dir / MANIFEST) or {}
    with writing_output(run_dir, MANIFEST):
        write_manifest(run_dir, {**manifest, "eval": manifest_entry(evaluation)}, storage_url=storage_url(run_dir))
    with writing_output(run_dir, "report.html"):
        write_report(run_dir, storage_url=storage_url(run_dir))


def eval_finished_run(run_dir: Path, cfg: EvalConfig, *, progress: bool = True) -> dict:
    """Evaluate the finished run in ``run_dir`` under its lock and record the results; returns eval.json's content."""
    from search.app.outputs import run_lock

    run_dir = Path(run_dir).expanduser()
    if not (run_dir / FINISHED).is_file():
        raise UsageError(f"{run_dir} holds no {FINISHED}: give the directory of a finished strata run")
    with run_lock(run_dir):
        evaluation = evaluate_run(run_dir, cfg, progress=progress)
        record_eval(run_dir, evaluation)
    return evaluation


def parser() -> ArgumentParser:
    out = ArgumentParser(prog="strata-eval", description=DESCRIPTION)
    out.add_argument("run_dir", type=Path, help="a finished strata run directory")
    out.add_argument("--tasks", required=True, help="comma-separated lm-eval task names, e.g. strata_nextline,arc_easy")
    out.add_argument("--include-path", default=None, help="a folder of lm-eval task YAMLs (local datasets)")
    out.add_argument("--num-fewshot", type=int, default=None, help="examples in context (default: each task's own)")
    out.add_argument("--limit", type=float, default=None, help="documents per task (< 1: a fraction); for checks")
    out.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default 16)")
    out.add_argument("--quiet", action="store_true", help="no progress bar")
    return out


def main(argv: list[str] | None = None) -> None:
    """Evaluate the run (see the module docstring); user errors end with ``error: ...`` and exit 2."""
    from search.evaluate.config import EvalConfig
    from search.evaluate.results import table

    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
        if not tasks:
            raise UsageError(f"--tasks {args.tasks!r} names no task: give comma-separated task names")
        cfg = EvalConfig(tasks=tasks, include_path=args.include_path, num_fewshot=args.num_fewshot,
                         limit=args.limit, batch_size=args.batch_size)  # fmt: skip
        evaluation = eval_finished_run(args.run_dir, cfg, progress=not args.quiet)
    except UsageError as error:
        fail(str(error))
    print(table(evaluation))
    print(f"eval.json: {Path(args.run_dir) / EVAL}")


if __name__ == "__main__":
    main()
