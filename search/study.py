"""The run's Optuna study: its storage, and resuming a run that was killed.

Default storage: a journal file in the run directory (``JournalFileBackend``), safe for several
processes and read directly by optuna-dashboard; any Optuna storage URL (PostgreSQL for many drivers)
via ``search.storage``. Optuna's heartbeats serve ``study.optimize`` only, not ask-and-tell, so on
restart the driver itself fails the trials a killed run left RUNNING and enqueues their parameters
again: no trial is lost. The run's own journal has one driver, so every RUNNING trial there is stale;
a shared storage has other live drivers, so only trials RUNNING for longer than ``stale_after`` seconds
(``search.stale_after``, far above one trial's scoring time) are taken as a dead driver's.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
JOURNAL = "study.journal"  # the run's own storage, in its run directory


def recover_journal(path: Path) -> int:
    """Cut a journal file back to its complete records; returns the bytes set aside.

    A kill in the middle of a write leaves a last line without its newline, or a line that is no JSON;
    Optuna then cannot read the study, and appending after it would keep it unreadable for good. The
    complete records before the first bad line stay; the rest goes to ``<journal>.torn-<time>`` with a
    warning. The lock a killed writer left (``<journal>.lock``) is removed too: the run's own journal
    has one writer, this process."""
    import json
    import time

    Path(f"{path}.lock").unlink(missing_ok=True)
    if not path.is_file():
        return 0
    data = path.read_bytes()
    good = 0
    for line in data.splitlines(keepends=True):
        try:
            json.loads(line)
        except ValueError:
            break
        if not line.endswith(b"\n"):
            break
        good += len(line)
    if good == len(data):
        return 0
    torn = path.with_name(f"{path.name}.torn-{time.strftime('%Y%m%d-%H%M%S')}")
    torn.write_bytes(data[good:])
    with path.open("r+b") as handle:
        handle.truncate(good)
    log.warning("%s ended in %d bytes that are no complete record (a killed write): set aside in %s",
                path, len(data) - good, torn)  # fmt: skip
    return len(data) - good


def make_storage(url: str | None, run_dir: Path, *, recover: bool = True) -> optuna.storages.BaseStorage:
    """The journal file ``run_dir/study.journal`` when ``url`` is None, else Optuna's storage for ``url``.

    ``recover``: the writer (the run itself) first cuts the journal back from a killed write
    (:func:`recover_journal`); readers (report, dashboard) leave it as it is."""
    if url is not None:
        return optuna.storages.get_storage(url)
    from optuna.storages.journal import JournalFileBackend

    Path(run_dir).mkdir(parents=True, exist_ok=True)
    journal = Path(run_dir) / JOURNAL
    if recover:
        recover_journal(journal)
    return optuna.storages.JournalStorage(JournalFileBackend(str(journal)))


def iteration_study(base: str, iteration: int) -> str:
    """The study of coarse-to-fine iteration ``iteration``: ``base``, then ``base-it1``, ``base-it2``, ..."""
    return base if iteration == 0 else f"{base}-it{iteration}"


def open_study(
    *,
    name: str,
    storage: optuna.storages.BaseStorage,
    sampler: BaseSampler,
    directions: list[str],
    stale_after: float | None = None,
) -> optuna.Study:
    """Create the study or load it, then fail and re-enqueue what a killed run left RUNNING.

    ``stale_after``: None = every RUNNING trial is stale (the run's own journal); else seconds."""
    study = optuna.create_study(
        study_name=name, storage=storage, sampler=sampler, directions=directions, load_if_exists=True
    )
    requeue_running(study, older_than=stale_after)
    return study


def requeue_running(study: optuna.Study, *, older_than: float | None = None) -> int:
    """Fail every RUNNING trial (started over ``older_than`` seconds ago) and enqueue it again; returns how many."""
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if older_than is not None:
        now = datetime.datetime.now()
        stale = [t for t in stale if t.datetime_start and (now - t.datetime_start).total_seconds() > older_than]
    requeued = 0
    for trial in stale:
        study.tell(trial.number, state=TrialState.FAIL)
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs=requeue_attrs(trial))
            requeued += 1
    if stale:
        log.warning("failed %d trials left running by an earlier run, re-enqueued the %d with parameters",
                    len(stale), requeued)  # fmt: skip
    return requeued


def requeue_attrs(trial: optuna.trial.FrozenTrial) -> dict:
    """What a re-enqueued trial carries of the failed one: its number, its generation and warm-start name
    (search/driver.py replays the generation), and the last selection stage it reached (its last reported
    intermediate value's step), from which the replay scores it again."""
    attrs = {"requeued_from": trial.number}
    for key in ("generation", "warm_start"):
        if key in trial.user_attrs:
            attrs[key] = trial.user_attrs[key]
    attrs["resume_stage"] = max(trial.intermediate_values, default=0)
    return attrs


def finished_count(study: optuna.Study) -> int:
    """Finished trials (complete or pruned) over every run of the study: the cap counts across restarts."""
    return len(study.get_trials(deepcopy=False, states=FINISHED))
