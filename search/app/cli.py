"""Command-line entry points: ``strata`` (the main job, a Hydra app).

User errors (bad paths, bad config keys or values, impossible budgets, a sweep with one bad member) end with one
line ``error: ...`` on stderr and exit status 2, before anything is written; bugs keep their traceback. Ctrl-C
ends with one line naming the stage it stopped in and how to resume, and exit status 130.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from search.app.args import fail, interrupted
from search.app.config import register_configs
from search.app.outputs import check_writable
from supernet.errors import UsageError
from supernet.io.files import CACHE_ENV, default_root

log = logging.getLogger(__name__)

CONFIG_MODULE = "conf"
FINISHED = "metrics.json"  # what a finished run directory holds (search/app/rundir.py)
SWEEP_COMBINATIONS = 32  # a sweep of at most this many jobs has every job checked; a larger one every member


def sweep_lists(overrides: list[str], config_loader=None) -> list[list[str]]:
    """The overrides as Hydra's basic sweeper splits them: per key, the list of its ``key=value`` choices (one
    for a plain override; a later override of a key replaces an earlier one)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    by_key: dict[str, list[str]] = {}
    for override in OverridesParser.create(config_loader=config_loader).parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            if not override.is_discrete_sweep():
                raise UsageError(f"{override.input_line} is no list or range: a sweep (strata -m) lists its values")
            by_key[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        else:
            by_key[key] = [override.input_line]
    return list(by_key.values())


def sweep_jobs(overrides: list[str], config_loader=None, *, every: bool = False) -> list[list[str]]:
    """The jobs a sweep's dry check composes, the first (every sweep at its first value) first: with ``every``,
    one per member of every sweep (the others at their first value); without, that first job alone."""
    lists = sweep_lists(overrides, config_loader)
    first = [choices[0] for choices in lists]
    jobs = [first]
    for index, choices in enumerate(lists) if every else ():
        jobs += [[*first[:index], choice, *first[index + 1 :]] for choice in choices[1:]]
    return jobs


def unknown_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Keys of ``cfg`` that its dataclass schema does not have (Hydra's ``+key=value`` adds them anyway)."""
    schema = OmegaConf.get_type(cfg)
    if not dataclasses.is_dataclass(schema):
        return []
    fields = {f.name for f in dataclasses.fields(schema)}
    out = []
    for key in cfg:
        if key not in fields:
            out.append(f"{prefix}{key}")
        elif not OmegaConf.is_missing(cfg, key) and OmegaConf.is_dict(cfg[key]):
            out.extend(unknown_keys(cfg[key], f"{prefix}{key}."))
    return out


def config_error(exc: Exception) -> str:
    """One line from a Hydra / OmegaConf composition error (a missing group option lists them all)."""
    from hydra.errors import MissingConfigException

    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    reason = " ".join(lines[:2]) if lines else type(exc).__name__
    if isinstance(exc, MissingConfigException) and exc.options:
        return f"{lines[0]}: use one of {', '.join(exc.options)}"
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        reason += f" ({str(cause).strip().splitlines()[0]})"
    return reason


def check_cache_writable() -> None:
    """Refuse a cache root (``$STRATA_CACHE_DIR``, else the user cache directory) that takes no file."""
    root = default_root().parent  # supernet/ and tokens/
    label = f"{CACHE_ENV}={os.environ[CACHE_ENV]}" if os.environ.get(CACHE_ENV) else f"the cache directory {root}"
    check_writable(CACHE_ENV, root, f"set {CACHE_ENV} to a writable directory", label=label)


def split_value(overrides: list[str]) -> None:
    """Refuse a word that is no ``key=value``: most often a value with spaces that the shell split in two."""
    for index, word in enumerate(overrides):
        if "=" in word or word.startswith("~"):  # ~key deletes a key, and has no value
            continue
        start = index
        while start > 0 and "=" not in overrides[start - 1]:
            start -= 1
        if start == 0:
            raise UsageError(f"{word!r} is no key=value override: the keys are in README.md (strata --cfg job)")
        end = index
        while end + 1 < len(overrides) and "=" not in overrides[end + 1]:
            end += 1
        key, _, value = overrides[start - 1].partition("=")
        joined = " ".join([value, *overrides[start : end + 1]])
        raise UsageError(f"{word!r} is no key=value override: a value with spaces is split by the shell, quote it "
                         f"(e.g. {key}='{joined}')")  # fmt: skip


def job_problem(config_name: str, overrides: list[str], *, run_dir: Path | None = None) -> str | None:
    """The one-line error a job of these overrides would end with (None when its config composes and checks):
    the composition, unknown keys, the typed config's checks and, given ``run_dir``, a finished run there.
    Runs inside ``initialize_config_module``."""
    from hydra import compose

    try:
        cfg = compose(config_name=config_name, overrides=overrides)
        extra = unknown_keys(cfg)
        if extra:
            raise UsageError(f"unknown config key {', '.join(extra)}: the keys are in README.md (strata --cfg job)")
        typed = OmegaConf.to_object(cfg)
        if run_dir is not None and (run_dir / FINISHED).is_file() and not getattr(typed, "overwrite", True):
            raise UsageError(
                f"hydra.run.dir={run_dir} holds a finished run ({FINISHED}): give another directory, or "
                "overwrite=true to run again and replace its outputs"
            )
    except UsageError as exc:
        return str(exc)
    except Exception as exc:  # Hydra / OmegaConf composition and validation errors
        return f"bad config: {config_error(exc)} (the keys and groups are listed in README.md)"
    return None


def sweep_problem(config_name: str, overrides: list[str], config_loader) -> str | None:
    """The error naming the sweep's bad members (``strata -m a=1,2 b=3,4``), None when every job checks.

    A sweep of at most ``SWEEP_COMBINATIONS`` jobs has every job composed, and a member is bad when every job
    holding it fails (else the failing jobs are named). A larger one has each member composed with the other
    sweeps at their first value (when that first job fails, its error is the answer). Errors every job shares
    (an unknown key) are given as a single run gives them."""
    lists = sweep_lists(overrides, config_loader)
    swept = [index for index, choices in enumerate(lists) if len(choices) > 1]
    combinations = math.prod(len(choices) for choices in lists)
    if combinations <= SWEEP_COMBINATIONS:
        jobs = [list(job) for job in itertools.product(*lists)]
    else:
        jobs = sweep_jobs(overrides, config_loader, every=True)
    problems = {}  # index of a failing job -> its error
    for number, job in enumerate(jobs):
        problem = job_problem(config_name, job)
        if problem is not None:
            problems[number] = problem
            if combinations > SWEEP_COMBINATIONS and number == 0:
                return problem  # the first job fails: every variation of one member holds its fault too
    if not problems:
        return None
    if len(problems) == len(jobs) and len(set(problems.values())) == 1:
        return problems[0]  # not the sweep's doing
    bad = {}  # a bad member (key=value) -> the error of its first job
    for index in swept:
        for member in lists[index]:
            holding = [number for number, job in enumerate(jobs) if job[index] == member]
            if holding and all(number in problems for number in holding):
                bad.setdefault(member, problems[holding[0]])
    if not bad:  # members that fail only together: name those jobs
        bad = {" ".join(jobs[number][i] for i in swept): problem for number, problem in problems.items()}
    reasons = "; ".join(problem if name in problem else f"{name}: {problem}" for name, problem in bad.items())
    which = "member" if len(bad) == 1 else "members"
    return f"sweep {which} {', '.join(bad)} cannot run, so no job was started ({reasons}); fix or drop the {which}"


def validate(config_name: str, argv: list[str]) -> None:
    """Compose the config with the given overrides (every member of a sweep) and build the typed object, check
    the output and cache directories can be written; errors -> exit 2."""
    from hydra import compose, initialize_config_module
    from hydra._internal.utils import get_args_parser  # Hydra's own command line, as hydra.main parses it
    from hydra.core.global_hydra import GlobalHydra

    args = get_args_parser().parse_args(argv)
    try:
        split_value(args.overrides)
        multirun = args.multirun
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            loader = GlobalHydra.instance().config_loader()
            first = sweep_jobs(args.overrides, loader)[0]
            cfg = compose(config_name=config_name, overrides=first, return_hydra_config=True)
            run_dir = Path(cfg.hydra.run.dir)
            check_writable("hydra.sweep.dir" if multirun else "hydra.run.dir",
                           Path(cfg.hydra.sweep.dir) if multirun else run_dir)  # fmt: skip
            check_cache_writable()
            if multirun:
                problem = sweep_problem(config_name, args.overrides, loader)
            else:
                problem = job_problem(config_name, first, run_dir=run_dir)
        if problem is not None:
            fail(problem)
    except UsageError as exc:
        fail(str(exc))
    except Exception as exc:  # Hydra / OmegaConf composition and validation errors
        fail(f"bad config: {config_error(exc)} (the keys and groups are listed in README.md)")


class StageLog(logging.Handler):
    """Remembers the last progress record of the run (strata's own loggers, INFO and up), so that a Ctrl-C can
    say which stage it stopped: the stage that record starts."""

    OWN = ("search", "supernet", "proxies", "bench")
    STAGES = (  # the start of a record -> the stage running after it (search/app/run.py's order)
        ("loaded ", "tokenizing and measuring the dense model"),
        ("dense model:", "calibration"),
        ("calibrated ", "building the supernet"),
        ("search finished", "measuring the baselines"),
        ("pruned model:", "saving the outputs"),
        ("scoring ", "scoring the candidates"),
    )
    BUILT = ("supernet built", "supernet loaded from cache", "saved supernet cache")

    def __init__(self, searching: bool) -> None:
        super().__init__(logging.INFO)
        self.searching = searching
        self.message: str | None = None
        self.stage = "loading the model"

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record's message and the stage it starts."""
        if record.name.split(".")[0] not in self.OWN:
            return
        self.message = record.getMessage()
        if self.message.startswith(self.BUILT):
            self.stage = "search" if self.searching else "measuring the pruned model"
            return
        for start, stage in self.STAGES:
            if self.message.startswith(start):
                self.stage = stage

    def where(self) -> str:
        """``during STAGE (last logged: MESSAGE)``."""
        last = f" (last logged: {self.message})" if self.message else ""
        return f"during {self.stage}{last}"


def interrupt_in(exc: BaseException) -> bool:
    """Whether ``exc`` is a KeyboardInterrupt, or an error raised while one unwound (a lock's cleanup, say)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def resume_hint() -> str:
    """How to resume: the same command, with the run (or sweep) directory named when Hydra chose it."""
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    key, directory = ("hydra.sweep.dir", hydra_cfg.sweep.dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:
        key, directory = ("hydra.run.dir", hydra_cfg.run.dir)
    given = any(item.startswith(f"{key}=") for item in hydra_cfg.overrides.hydra)
    again = "run the same command again" if given else f"run the same command again with {key}={directory}"
    return f"nothing is lost: {again} to resume"


def hydra_app(config_name: str, task: Callable[[object, Path], object]) -> Callable[[], None]:
    """A console-script entry that validates, then runs ``task(typed_cfg, run_dir)`` under Hydra."""
    prog = "strata" if config_name == "strata" else f"strata-{config_name}"

    @hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=config_name, version_base=None)
    def _app(cfg: DictConfig) -> None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        stages = StageLog(searching=OmegaConf.select(cfg, "search.sampler", default="none") != "none")
        logging.getLogger().addHandler(stages)  # after Hydra configured the job's logging, which resets handlers
        try:
            typed = OmegaConf.to_object(cfg)
            task(typed, run_dir)
        except UsageError as exc:
            fail(str(exc))
        except (KeyboardInterrupt, Exception) as exc:
            if not interrupt_in(exc):
                raise
            log.warning("interrupted %s", stages.where())
            interrupted(prog, f"{stages.where()} in {run_dir}; {resume_hint()}")
        finally:
            logging.getLogger().removeHandler(stages)
        log.info("outputs written to %s", run_dir)
        print(f"{prog}: outputs in {run_dir}")

    def entry() -> None:
        try:
            register_configs()
            validate(config_name, sys.argv[1:])
            _app()
        except KeyboardInterrupt:  # before the job started (checks, Hydra's setup) or after it ended
            interrupted(prog, "before the run started: nothing was written; run the same command again")

    return entry


def _main_task(cfg, run_dir: Path) -> None:
    from search.app.outcome import outcome_table
    from search.app.run import run

    print(outcome_table(run(cfg, run_dir), run_dir))  # run() clears what overwrite=true replaces, under its lock


main = hydra_app("strata", _main_task)

if __name__ == "__main__":
    main()
