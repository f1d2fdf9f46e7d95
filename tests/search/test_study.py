"""Resuming a study: which RUNNING trials are a dead driver's, failed and re-enqueued."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from search.study import requeue_running


def running_study() -> optuna.Study:
    study = optuna.create_study()
    for _ in range(2):
        study.ask({"x": optuna.distributions.IntDistribution(0, 9)})
    return study


def test_own_journal_requeues_every_running_trial() -> None:
    study = running_study()
    assert requeue_running(study) == 2
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL, TrialState.WAITING, TrialState.WAITING]
    assert [t.user_attrs["requeued_from"] for t in trials[2:]] == [0, 1]
    assert [t.system_attrs["fixed_params"] for t in trials[2:]] == [t.params for t in trials[:2]]


def test_shared_storage_leaves_live_drivers_trials_alone() -> None:
    study = running_study()
    assert requeue_running(study, older_than=3600) == 0  # another driver may be scoring them
    assert all(t.state == TrialState.RUNNING for t in study.get_trials())
    time.sleep(0.05)
    assert requeue_running(study, older_than=0.01) == 2  # started long enough ago: a dead driver's
