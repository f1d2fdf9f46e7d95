"""Reading a finished (or running) run directory: its JSON outputs, its Hydra config, its study storage (keeping
one, its lock and the record of what strata wrote, is :mod:`search.app.outputs`).

A run directory is what ``strata`` writes (README.md, Design): ``metrics.json``, ``allocation.json``, ``model/``,
``.hydra/config.yaml`` (the resolved config), the study storage (``study.journal``, or the URL in
``search.storage``), and what the tools add (``report.html``, ``manifest.json``, ``artifacts/``).
``strata-summary``, ``strata-dashboard`` and the run report read runs only through these functions.

"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.study import JOURNAL, iteration_study, make_storage

if TYPE_CHECKING:
    import optuna

ARTIFACTS = "artifacts"  # the run's Optuna FileSystemArtifactStore (search/app/artifacts.py)
DEFAULT_STUDY = "strata"  # SearchConfig.study_name's default
EVAL = "eval.json"  # lm-evaluation-harness results of the run's models (search/app/eval.py)
FINISHED = "metrics.json"  # written last: what a finished run directory holds (search/app/cli.py checks it)


def read_json(path: Path) -> Any | None:
    """The parsed JSON file at ``path``, or None when it does not exist."""
    path = Path(path)
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def run_config(run_dir: Path) -> dict:
    """The run's resolved config from ``.hydra/config.yaml`` as plain dicts ({} when there is none)."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=False)


def storage_url(run_dir: Path) -> str | None:
    """The ``search.storage`` URL the run used, or None (the default journal file)."""
    return (run_config(run_dir).get("search") or {}).get("storage")


def study_name(run_dir: Path) -> str:
    """The run's first study name (``search.study_name``); coarse-to-fine iterations add ``-itN``."""
    return (run_config(run_dir).get("search") or {}).get("study_name") or DEFAULT_STUDY


def open_storage(run_dir: Path, url: str | None = None) -> optuna.storages.BaseStorage | None:
    """The run's study storage: ``url``, else ``run_dir/study.journal``, else the configured URL; None if none.

    Never creates or changes anything: a run without a study (``search=none``) gives None.
    """
    if url is None and not (Path(run_dir) / JOURNAL).is_file():
        url = storage_url(run_dir)
        if url is None:
            return None
    return make_storage(url, Path(run_dir), recover=False)


def run_studies(run_dir: Path, metrics: dict | None = None) -> list[str]:
    """The studies the run searched, in iteration order ([] when it did not search).

    From ``metrics.json``'s ``search.iterations[*].study`` (``metrics``: its content, before it is written),
    else named after ``search.study_name``.
    """
    if metrics is None:
        metrics = read_json(Path(run_dir) / FINISHED) or {}
    search = metrics.get("search")
    if not search:
        return []
    base = study_name(run_dir)
    entries = search.get("iterations") or [{"iteration": 0}]
    return [e.get("study") or iteration_study(base, int(e.get("iteration", i))) for i, e in enumerate(entries)]
