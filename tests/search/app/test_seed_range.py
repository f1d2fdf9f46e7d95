"""Seeds are checked when the config is read: 0 <= seed < 2**32, what numpy's, torch's and Optuna's
generators all take, instead of an overflow in torch or a ValueError in numpy after calibration."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch

from search.app.config import ProxyReportConfig, RunConfig
from search.driver import SearchConfig, make_sampler
from supernet.errors import UsageError

BAD = [-1, 2**32, 2**63, 99999999999999999999]
GOOD = [0, 2**32 - 1]


@pytest.mark.parametrize("config", [RunConfig, ProxyReportConfig])
@pytest.mark.parametrize("seed", BAD)
def test_seed_outside_the_range_is_refused(config, seed: int) -> None:
    with pytest.raises(UsageError) as caught:
        config(seed=seed)
    assert str(caught.value).startswith(f"seed={seed} is outside [0, 2**32): ")
    assert f"use 0 <= seed <= {2**32 - 1}" in str(caught.value)


@pytest.mark.parametrize("config", [RunConfig, ProxyReportConfig])
@pytest.mark.parametrize("seed", GOOD)
def test_seed_inside_the_range_is_accepted(config, seed: int) -> None:
    assert config(seed=seed).seed == seed


@pytest.mark.parametrize("seed", GOOD)
@pytest.mark.parametrize("sampler", ["evo", "tpe", "cmaes", "nsga2", "nsga3", "random"])
def test_every_generator_takes_the_range_ends(grid, sampler: str, seed: int) -> None:
    """The range is what they all take: torch, numpy (both APIs) and every sampler, asked a trial."""
    torch.manual_seed(seed)
    np.random.default_rng(seed)
    np.random.RandomState(seed)
    study = optuna.create_study(sampler=make_sampler(SearchConfig(sampler=sampler), grid, seed))
    for _ in range(2):
        trial = study.ask()
        study.tell(trial, trial.suggest_int("x", 0, 4) + trial.suggest_int("y", 0, 4))


def test_last_seed_with_iterations_stays_in_range(grid) -> None:
    """Iteration r's sampler is seeded seed + r, wrapped into the range: seed=2**32-1 runs a second iteration."""
    from search.app.pipeline import open_iteration_study
    from search.evolution import search_space

    cfg = RunConfig(seed=2**32 - 1, search=SearchConfig(sampler="tpe", iterations=2))
    study = open_iteration_study(cfg, grid, 1, storage=optuna.storages.InMemoryStorage(), directions=["minimize"],
                                 manifest=None, starts={"previous_best": list(grid.target)})  # fmt: skip
    for _ in range(2):  # the enqueued warm start, then the sampler's first proposal
        trial = study.ask(search_space(grid))
        study.tell(trial, float(sum(trial.params.values())))
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2
