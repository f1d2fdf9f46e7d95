"""Resuming a study: which RUNNING trials are a dead driver's, failed and re-enqueued."""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from search.study import make_storage, requeue_running


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


def test_a_trial_without_parameters_is_failed_not_counted_as_requeued() -> None:
    study = running_study()
    study.ask()  # asked, killed before any parameter was suggested
    assert requeue_running(study) == 2
    assert len(study.get_trials(states=(TrialState.WAITING,))) == 2


@pytest.mark.parametrize("tail", [b'{"op_code": 5, "worker_id": "x", "trial_id"', b"garbage\n", b"\x00\x00\x00"])
def test_a_torn_journal_is_cut_back_to_its_complete_records(tmp_path, tail) -> None:
    study = optuna.create_study(study_name="s", storage=make_storage(None, tmp_path))
    for x in range(3):
        study.tell(study.ask({"x": optuna.distributions.IntDistribution(0, 9)}), float(x))
    journal = tmp_path / "study.journal"
    complete = journal.read_bytes()
    journal.write_bytes(complete + tail)  # what a kill in the middle of a write leaves
    (tmp_path / "study.journal.lock").touch()  # and the lock its writer held
    resumed = optuna.load_study(study_name="s", storage=make_storage(None, tmp_path))
    assert [t.value for t in resumed.get_trials()] == [0.0, 1.0, 2.0]
    assert journal.read_bytes() == complete
    (torn,) = tmp_path.glob("study.journal.torn-*")
    assert torn.read_bytes() == tail
    resumed.tell(resumed.ask({"x": optuna.distributions.IntDistribution(0, 9)}), 3.0)  # appends cleanly
    assert len(optuna.load_study(study_name="s", storage=make_storage(None, tmp_path)).trials) == 4
