"""The run's Optuna study: its storage, and resuming a run that was killed.

Default storage: a journal file in the run directory (``JournalFileBackend``), safe for several
processes and read directly by optuna-dashboard; any Optuna storage URL (PostgreSQL for many drivers)
via ``search.storage``. Only RDB storages have heartbeats, so on restart the driver itself fails the
trials a killed run left RUNNING and enqueues their parameters again: no trial is lost.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def make_storage(url: str | None, run_dir: Path) -> optuna.storages.BaseStorage:
    """The journal file ``run_dir/study.journal`` when ``url`` is None, else Optuna's storage for ``url``."""
    if url is None:
        from optuna.storages.journal import JournalFileBackend

        run_dir.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    return optuna.storages.get_storage(url)


def open_study(
    *, name: str, storage: optuna.storages.BaseStorage, sampler: BaseSampler, directions: list[str]
) -> optuna.Study:
    """Create the study or load it, then fail and re-enqueue what a killed run left RUNNING."""
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, directions=directions, load_if_exists=True
    )
    requeue_running(study)
    return study


def requeue_running(study: optuna.Study) -> int:
    """Fail every RUNNING trial and enqueue its parameters again; returns how many."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
    if stale:
        log.warning("re-enqueued %d trials left running by an earlier run", len(stale))
    return len(stale)


def finished_count(study: optuna.Study) -> int:
    """Finished trials (complete or pruned) over every run of the study: the cap counts across restarts."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))
