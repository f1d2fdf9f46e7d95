"""Command-line entry points: ``strata`` (the main job, a Hydra app).

User errors (bad paths, bad config keys or values, impossible budgets) end with one line
``error: ...`` on stderr and exit status 2, before anything is written; bugs keep their traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from search.app.args import fail
from search.app.config import register_configs
from supernet.errors import UsageError

log = logging.getLogger(__name__)

CONFIG_MODULE = "conf"
FINISHED = "metrics.json"  # what a finished run directory holds (search/app/rundir.py)


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """Overrides with every sweep (``a=1,2``) replaced by its first value, for a dry composition."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    out = []
    for override in parsed:
        if override.is_sweep_override():
            value = next(iter(override.sweep_string_iterator()))
            out.append(f"{override.get_key_element()}={value}")
        else:
            out.append(override.input_line)
    return out


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


def check_writable(key: str, directory: Path) -> None:
    """Refuse an output directory that cannot be created or written: its nearest existing ancestor must be a
    directory this process may write into (Hydra would fail later, configuring its log file)."""
    existing = directory.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"{key}={directory} cannot be created: {existing} is a file; give a writable directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{key}={directory} cannot be written: {existing} is not writable; give a writable directory")


def validate(config_name: str, argv: list[str]) -> None:
    """Compose the config once with the given overrides and build the typed object; errors -> exit 2."""
    from hydra import compose, initialize_config_module
    from hydra._internal.utils import get_args_parser  # Hydra's own command line, as hydra.main parses it

    args = get_args_parser().parse_args(argv)
    try:
        overrides = first_of_sweeps(args.overrides)
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
        multirun = args.multirun
        run_dir = Path(cfg.hydra.run.dir)
        check_writable("hydra.sweep.dir" if multirun else "hydra.run.dir",
                       Path(cfg.hydra.sweep.dir) if multirun else run_dir)  # fmt: skip
        with open_dict(cfg):
            del cfg["hydra"]
        extra = unknown_keys(cfg)
        if extra:
            raise UsageError(f"unknown config key {', '.join(extra)}: the keys are in README.md (strata --cfg job)")
        typed = OmegaConf.to_object(cfg)
        if not multirun and (run_dir / FINISHED).is_file() and not getattr(typed, "overwrite", True):
            raise UsageError(
                f"hydra.run.dir={run_dir} holds a finished run ({FINISHED}): give another directory, or "
                "overwrite=true to run again and replace its outputs"
            )
    except UsageError as exc:
        fail(str(exc))
    except Exception as exc:  # Hydra / OmegaConf composition and validation errors
        fail(f"bad config: {config_error(exc)} (the keys and groups are listed in README.md)")


def hydra_app(config_name: str, task: Callable[[object, Path], object]) -> Callable[[], None]:
    """A console-script entry that validates, then runs ``task(typed_cfg, run_dir)`` under Hydra."""

    @hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=config_name, version_base=None)
    def _app(cfg: DictConfig) -> None:
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            typed = OmegaConf.to_object(cfg)
            task(typed, run_dir)
        except UsageError as exc:
            fail(str(exc))
        log.info("outputs written to %s", run_dir)
        print(f"strata: outputs in {run_dir}")

    def entry() -> None:
        register_configs()
        validate(config_name, sys.argv[1:])
        _app()

    return entry


def _main_task(cfg, run_dir: Path) -> None:
    from search.app.outcome import outcome_table
    from search.app.run import run
    from search.app.rundir import clear_outputs

    if cfg.overwrite:
        clear_outputs(run_dir)
    print(outcome_table(run(cfg, run_dir), run_dir))


main = hydra_app("strata", _main_task)

if __name__ == "__main__":
    main()
