"""A search killed at any point resumes as if it had not stopped: the same trials finish, in the same states,
and the same allocation wins (the driver replays the killed generation; search/driver.py)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search.driver import Search, SearchConfig, enqueue_warm_starts
from search.evolution import EvolutionSampler, best_complete
from search.study import requeue_running

optuna.logging.set_verbosity(optuna.logging.WARNING)
CFG = SearchConfig(sampler="evo", trials=60, offspring=8, stage_tokens=[64, 128, 256], survivors=[4, 2, 1])


class Killed(BaseException):
    """What SIGKILL does to the driver: nothing after it runs."""


class DyingSampler(EvolutionSampler):
    """Dies in the middle of its ``die_at``-th proposal: that trial is left RUNNING without parameters."""

    def __init__(self, grid, die_at: int | None) -> None:
        super().__init__(grid, seed=0, max_pairs=CFG.max_pairs)
        self.calls, self.die_at = 0, die_at

    def sample_relative(self, study, trial, search_space):
        self.calls += 1
        if self.calls == self.die_at:
            raise Killed
        return super().sample_relative(study, trial, search_space)


def dying(evaluator_class, die_at: int | None):
    class DyingEvaluator(evaluator_class):
        """Dies at its ``die_at``-th score: the batch being scored is left RUNNING, with earlier stages reported."""

        calls = 0

        def score(self, levels, stage):
            type(self).calls += 1
            if type(self).calls == die_at:
                raise Killed
            return super().score(levels, stage)

    return DyingEvaluator


def search(storage, grid, optimum, evaluator_class, *, score_dies: int | None = None, ask_dies: int | None = None):
    """One driver process on ``storage``: open (failing and re-enqueueing what a dead one left), run."""
    study = optuna.create_study(study_name="s", storage=storage, sampler=DyingSampler(grid, ask_dies),
                                load_if_exists=True)  # fmt: skip
    requeue_running(study)
    enqueue_warm_starts(study, grid, {"uniform": list(grid.target)})
    try:
        Search(CFG, study, grid, dying(evaluator_class, score_dies)(grid, optimum), progress=False).run()
    except Killed:
        return None
    return study


def outcome(study, grid) -> tuple:
    finished = sorted((tuple(t.user_attrs["levels"]), t.state.name) for t in study.get_trials()
                      if t.state in (TrialState.COMPLETE, TrialState.PRUNED))  # fmt: skip
    return finished, best_complete(study, grid)


@pytest.mark.parametrize(
    "kills",
    [
        [{"score_dies": 1}],  # before anything is scored: the warm start is running
        [{"score_dies": 30}],  # in a generation's first stage
        [{"score_dies": 60}, {"score_dies": 12}],  # twice, the second time sooner after the restart
        [{"ask_dies": 5}],  # while proposing: a trial left without parameters
        [{"ask_dies": 20}, {"score_dies": 17}, {"ask_dies": 3}],
    ],
)
def test_a_killed_search_resumes_to_the_uninterrupted_outcome(grid, optimum, evaluator_class, kills) -> None:
    reference = search(optuna.storages.InMemoryStorage(), grid, optimum, evaluator_class)
    storage = optuna.storages.InMemoryStorage()
    for kill in kills:
        assert search(storage, grid, optimum, evaluator_class, **kill) is None, f"{kill} did not kill"
    resumed = search(storage, grid, optimum, evaluator_class)
    assert outcome(resumed, grid) == outcome(reference, grid)
    trials = resumed.get_trials()
    assert len([t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]) == CFG.trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    requeued = {t.user_attrs.get("requeued_from") for t in trials}
    assert all(t.number in requeued for t in trials if t.state == TrialState.FAIL and t.params)  # none lost
