"""Failed trials: a NaN or inf score fails the trial at once, and a search where every trial fails stops with
one ``UsageError`` naming the failure after ``search.max_failed_trials`` instead of asking again forever."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from search.driver import Search, SearchConfig, make_sampler
from supernet.errors import UsageError

optuna.logging.set_verbosity(optuna.logging.ERROR)
RUNAWAY = 400  # scores before the evaluator gives up: a search that asks again forever fails, not hangs


def nan_evaluator(evaluator_class, grid, optimum, nan_when):
    """The quadratic evaluator scoring NaN where ``nan_when(levels, stage)``."""

    class NanEvaluator(evaluator_class):
        def score(self, levels, stage: int) -> float:
            value = super().score(levels, stage)
            if self.evaluations > RUNAWAY:
                raise RuntimeError(f"runaway search: {self.evaluations} scores")
            return math.nan if nan_when(levels, stage) else value

    return NanEvaluator(grid, optimum)


def search(grid, evaluator, sampler: str, **overrides) -> optuna.Study:
    cfg = SearchConfig(sampler=sampler, stage_tokens=[64, 128, 256], survivors=[4, 2, 1], **overrides)
    study = optuna.create_study(sampler=make_sampler(cfg, grid, 0))
    Search(cfg, study, grid, evaluator, progress=False).run()
    return study


@pytest.mark.parametrize(("sampler", "stopped_after"), [("random", 6), ("tpe", 6), ("evo", 8)])
def test_every_trial_nan_stops_after_max_failed_trials(grid, optimum, evaluator_class, sampler, stopped_after):
    """Free samplers ask one trial at a time: exactly 6 fail; evolution checks after each generation of 8."""
    evaluator = nan_evaluator(evaluator_class, grid, optimum, lambda levels, stage: True)
    cfg = SearchConfig(sampler=sampler, trials=40, offspring=8, stage_tokens=[64, 128, 256], survivors=[4, 2, 1],
                       max_failed_trials=6)  # fmt: skip
    study = optuna.create_study(sampler=make_sampler(cfg, grid, 0))
    with pytest.raises(UsageError) as caught:
        Search(cfg, study, grid, evaluator, progress=False).run()
    message = str(caught.value)
    assert "\n" not in message  # the CLI prints it as one `error:` line
    assert f"search.max_failed_trials=6: {stopped_after} trials in a row failed" in message
    assert "scored nan (quadratic at stage" in message and "weights" in message and "data" in message
    trials = study.get_trials()
    assert len(trials) == stopped_after
    assert all(t.state == TrialState.FAIL and "scored nan" in t.user_attrs["fail_reason"] for t in trials)


@pytest.mark.parametrize(("sampler", "limit"), [("random", 10), ("evo", 50)])
def test_some_failures_among_completions_run_to_the_cap(grid, optimum, evaluator_class, sampler, limit) -> None:
    """A third of the candidates score NaN: those trials fail (never selected, never pruned), the search still
    reaches its cap."""
    evaluator = nan_evaluator(evaluator_class, grid, optimum, lambda levels, stage: hash(tuple(levels)) % 3 == 0)
    study = search(grid, evaluator, sampler, trials=24, offspring=8, max_failed_trials=limit)
    assert len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))) == 24
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert failed and all("scored nan" in t.user_attrs["fail_reason"] for t in failed)
    for trial in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)):
        assert all(math.isfinite(v) for v in trial.intermediate_values.values()), trial.intermediate_values
        assert trial.state != TrialState.COMPLETE or math.isfinite(trial.value)
    if sampler == "evo":  # a failing child counts as proposed: the same parent does not propose it again
        levels = [tuple(t.user_attrs["levels"]) for t in failed]
        assert len(levels) == len(set(levels))


def test_last_stage_nan_stops_instead_of_pruning_to_the_cap(grid, optimum, evaluator_class) -> None:
    """NaN on the last stage only: the earlier stages prune, but nothing completes; the search stops with the
    error, not a run that goes on to materialise nothing."""
    evaluator = nan_evaluator(evaluator_class, grid, optimum, lambda levels, stage: stage == 2)
    with pytest.raises(UsageError, match=r"trials in a row failed .*scored nan \(quadratic at stage 2\)"):
        search(grid, evaluator, "evo", trials=200, offspring=8, max_failed_trials=10)


def test_inf_fails_the_trial(grid, optimum, evaluator_class) -> None:
    """An infinite score is no fitness either: -inf would win every selection."""
    evaluator = evaluator_class(grid, optimum)
    calls = iter(range(100))
    evaluator.score_many = lambda batch, stage: [-math.inf if next(calls) == 0 else 1.0 for _ in batch]
    study = search(grid, evaluator, "random", trials=3)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    first = study.get_trials()[0]
    assert (
        first.state == TrialState.FAIL
        and first.user_attrs["fail_reason"] == "trial 0 scored -inf (quadratic at stage 2)"
    )


def test_max_failed_trials_must_be_positive() -> None:
    with pytest.raises(UsageError, match=r"search.max_failed_trials=0 must be >= 1"):
        SearchConfig(max_failed_trials=0)
