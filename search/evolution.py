"""A budget-preserving (1 + lambda) evolutionary sampler for Optuna (Týr-the-Pruner, EvoPress).

Every offspring is a level-switch mutation (search/mutation.py) of the best complete trial so far
(the parent; the grid's target levels before any trial completes), so every proposal is on budget.
Offspring already proposed in the study are rejected and drawn again.

State lives in the study's storage, so the sampler resumes and works across processes: the levels of
each proposal are written to the trial's system attrs under ``"EvolutionSampler:levels"`` (a JSON list
of ints) as soon as it is proposed, and the parent is read back from the trials. Randomness is drawn
from ``numpy.random.default_rng([seed, index])``, index = the trial's number less the failed trials
before it that are played again (a killed run's, a lost worker's: their re-enqueued copies; a trial failed
on its score, user attribute ``fail_reason``, is not: it keeps its draw and counts as proposed), so the
same seed gives the same proposals whatever the number of workers, provided trials are asked in the same
order, and a search resumed after a kill proposes what an uninterrupted one would.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
from optuna.distributions import IntDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.trial import TrialState

from search.mutation import level_switch
from supernet.errors import UsageError

if TYPE_CHECKING:
    from optuna import Study
    from optuna.distributions import BaseDistribution
    from optuna.trial import FrozenTrial

    from supernet.space.grid import LevelGrid


FAIL_REASON = "fail_reason"  # user attribute of a trial failed for good on its score (NaN, inf): never replayed


def replayed(trial: FrozenTrial) -> bool:
    """A failed trial that a re-enqueued copy plays again (a killed run's, a lost worker's): it neither counts
    as proposed nor takes a draw. A trial failed on its score (``FAIL_REASON``) is not played again."""
    return trial.state == TrialState.FAIL and FAIL_REASON not in trial.user_attrs


def param_names(grid: LevelGrid) -> list[str]:
    """One ordinal parameter per module, in grid order: ``L03.attn``, ``L03.mlp``, ..."""
    width = len(str(max(m.layer for m in grid.modules)))
    return [f"L{m.layer:0{width}d}.{m.kind}" for m in grid.modules]


def search_space(grid: LevelGrid) -> dict[str, IntDistribution]:
    return {name: IntDistribution(m.lo, m.hi) for name, m in zip(param_names(grid), grid.modules, strict=True)}


def trial_levels(trial: FrozenTrial, grid: LevelGrid) -> list[int] | None:
    """The levels a trial was evaluated at: its repaired levels if recorded, else its params."""
    if "levels" in trial.user_attrs:
        return list(trial.user_attrs["levels"])
    if EvolutionSampler.LEVELS_KEY in trial.system_attrs:
        return json.loads(trial.system_attrs[EvolutionSampler.LEVELS_KEY])
    names = param_names(grid)
    if all(name in trial.params for name in names):
        return [int(trial.params[name]) for name in names]
    return None


def best_complete(study: Study, grid: LevelGrid) -> list[int] | None:
    """Levels of the lowest-value complete trial (ties: the earliest)."""
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not done:
        return None
    return trial_levels(min(done, key=lambda t: (t.value, t.number)), grid)


class EvolutionSampler(BaseSampler):
    """(1 + lambda) evolution over module levels by level-switch mutation; never leaves the budget.

    Args:
        grid: the level grid (search space and budget).
        seed: seed of every proposal (with the trial number).
        max_pairs: most level switches in one offspring (Týr: 4).
        max_tries: draws before giving up on finding an offspring not yet in the study.
    """

    LEVELS_KEY = "EvolutionSampler:levels"

    def __init__(self, grid: LevelGrid, *, seed: int = 0, max_pairs: int = 4, max_tries: int = 200) -> None:
        if max_pairs < 1:
            raise UsageError(f"search.max_pairs={max_pairs} must be >= 1")
        self._grid = grid
        self._seed = seed
        self._max_pairs = max_pairs
        self._max_tries = max_tries
        self._names = param_names(grid)
        self._random = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return dict(search_space(self._grid))

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if "fixed_params" in trial.system_attrs:  # an enqueued warm start or re-run: keep it as given
            return {}
        parent = best_complete(study, self._grid) or list(self._grid.target)
        trials = study.get_trials(deepcopy=False)
        # a failed trial (a killed run's) is replayed by its re-enqueued copy: it neither counts as seen nor
        # shifts the random stream, so a resumed search proposes what an uninterrupted one would; one failed on
        # its score (NaN) does both, or the same parent would propose the same failing child again and again
        failed = sum(1 for t in trials if replayed(t) and t.number < trial.number)
        seen = {tuple(lv) for t in trials if not replayed(t) and (lv := trial_levels(t, self._grid))}
        rng = np.random.default_rng([self._seed, trial.number - failed])
        child = parent
        for _ in range(self._max_tries):
            child = level_switch(rng, parent, self._grid, max_pairs=self._max_pairs)
            if tuple(child) not in seen:
                break
        assert self._grid.on_budget(child), f"mutation left the budget: {child}"
        study._storage.set_trial_system_attr(trial._trial_id, self.LEVELS_KEY, json.dumps(child))
        return dict(zip(self._names, child, strict=True))

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)
