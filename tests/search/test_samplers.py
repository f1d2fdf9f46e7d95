"""Every sampler: proposals on budget, same seed same trials, other seed other trials; selection."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from search.driver import Search, SearchConfig, enqueue_warm_starts, make_sampler
from search.evolution import best_complete

optuna.logging.set_verbosity(optuna.logging.WARNING)
SAMPLERS = ["evo", "tpe", "cmaes", "nsga2", "random"]


def run(grid, optimum, sampler: str, seed: int, trials: int = 40, evaluator_class=None):
    cfg = SearchConfig(sampler=sampler, trials=trials, offspring=8, stage_tokens=[64, 128, 256], survivors=[4, 2, 1])
    study = optuna.create_study(sampler=make_sampler(cfg, grid, seed))
    enqueue_warm_starts(study, grid, {"uniform": list(grid.target)})
    evaluator = evaluator_class(grid, optimum)
    Search(cfg, study, grid, evaluator, progress=False).run()
    return study, evaluator


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_evaluated_candidate_meets_the_budget(grid, optimum, sampler: str, evaluator_class) -> None:
    study, evaluator = run(grid, optimum, sampler, seed=0, evaluator_class=evaluator_class)
    assert evaluator.seen  # QuadraticEvaluator.score asserts on_budget for each
    for trial in study.get_trials():
        assert grid.on_budget(trial.user_attrs["levels"])
        assert trial.user_attrs["kept_params"] == grid.params(grid.target)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_same_seed_same_trials_other_seed_other_trials(grid, optimum, sampler: str, evaluator_class) -> None:
    def levels(seed):
        study, _ = run(grid, optimum, sampler, seed, trials=24, evaluator_class=evaluator_class)
        return [t.user_attrs["levels"] for t in study.get_trials()]

    assert levels(0) == levels(0)
    assert levels(0) != levels(1)


def test_evolution_finds_the_optimum_and_prunes_by_stage(grid, optimum, evaluator_class) -> None:
    study, _ = run(grid, optimum, "evo", seed=0, trials=400, evaluator_class=evaluator_class)
    assert best_complete(study, grid) == optimum
    pruned = study.get_trials(states=(TrialState.PRUNED,))
    assert {max(t.intermediate_values) for t in pruned} == {0, 1, 2}  # pruned after every stage, the last too


@pytest.mark.parametrize("survivors", [[4, 2, 1], [4, 3, 2], [6, 6, 6]])
def test_last_survivors_entry_is_the_trials_completing_per_generation(grid, optimum, evaluator_class, survivors):
    cfg = SearchConfig(sampler="evo", trials=8 * 6, offspring=8, stage_tokens=[64, 128, 256], survivors=survivors)
    study = optuna.create_study(sampler=make_sampler(cfg, grid, 0))
    Search(cfg, study, grid, evaluator_class(grid, optimum), progress=False).run()
    trials = study.get_trials()
    assert len(trials) == 48
    for generation in range(6):
        states = [t.state for t in trials[8 * generation : 8 * generation + 8]]
        assert states.count(TrialState.COMPLETE) == survivors[-1]


def test_evolution_never_proposes_a_duplicate(grid, optimum, evaluator_class) -> None:
    study, _ = run(grid, optimum, "evo", seed=0, trials=120, evaluator_class=evaluator_class)
    proposed = [tuple(t.user_attrs["levels"]) for t in study.get_trials() if "warm_start" not in t.user_attrs]
    assert len(proposed) == len(set(proposed))


def test_warm_start_is_scored_first_on_the_last_stage(grid, optimum, evaluator_class) -> None:
    study, _ = run(grid, optimum, "evo", seed=0, trials=10, evaluator_class=evaluator_class)
    first = study.get_trials()[0]
    assert first.user_attrs["warm_start"] == "uniform"
    assert first.state == TrialState.COMPLETE and list(first.intermediate_values) == [2]


def test_search_config_refuses_bad_values() -> None:
    from supernet.errors import UsageError

    with pytest.raises(UsageError, match="search.sampler"):
        SearchConfig(sampler="annealing")
    with pytest.raises(UsageError, match="one entry per stage"):
        SearchConfig(stage_tokens=[1, 2], survivors=[1])
    with pytest.raises(UsageError, match="search.fitness"):
        SearchConfig(fitness="train")
    with pytest.raises(UsageError, match="search.workers=1"):
        SearchConfig(resample=True, workers=2)


@pytest.mark.parametrize("sampler", [*SAMPLERS, "nsga3"])
def test_a_thousand_trials_on_a_real_layout_meet_the_budget_rule(sampler: str, evaluator_class) -> None:
    """Llama-3.1-8B's layout (a GQA group costs 426.7 MLP channels): every trial the driver asks of
    every sampler is within one MLP step below the budget, never above."""
    import torch
    from layouts import layout_config
    from transformers import AutoModelForCausalLM

    from supernet.io.adapters import adapter_for
    from supernet.space.budget import BudgetConfig, budget_grid
    from supernet.space.repair import repair
    from supernet.variants.config import SupernetConfig

    config = layout_config("llama-3.1-8b", layers=16)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    grid = budget_grid(model, adapter_for(config), BudgetConfig(keep=0.5), SupernetConfig())
    optimum = repair(grid, [m.lo if m.layer % 2 else m.hi for m in grid.modules])
    trials = 1000 if sampler != "tpe" else 300  # TPE's multivariate fit grows with the history: 300 keeps it to seconds
    study, evaluator = run(grid, optimum, sampler, seed=0, trials=trials, evaluator_class=evaluator_class)
    assert len(study.get_trials()) >= trials
    for trial in study.get_trials():
        cost = grid.cost(trial.user_attrs["levels"])
        assert grid.budget - grid.step_cost("mlp") < cost <= grid.budget
