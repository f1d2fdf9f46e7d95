"""Ray workers (search/workers.py): the pool's contract, a search that loses an actor mid-trial, and
one seed giving one allocation with 1 or 2 actors on the tiny reference model.

Ray starts once for the module (about 5 s); the actors of the fake tests hold a quadratic evaluator,
so only the end-to-end test loads a model. Ray is a dev dependency: without it this module fails.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import optuna
import pytest
import ray
from optuna.trial import TrialState
from ray import cloudpickle

from search.driver import Search, SearchConfig, enqueue_warm_starts, make_sampler
from search.study import finished_count
from search.workers import EvaluatorPool, RayConfig

if TYPE_CHECKING:
    from pathlib import Path

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import a test module


@pytest.fixture(scope="module", autouse=True)
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    yield
    ray.shutdown()


class FakeEvaluator:
    """Fitness = squared distance to ``optimum`` + 0.01 * stage + the supernet state (an offset)."""

    def __init__(self, spec: FakeSpec, offset: float) -> None:
        self.spec, self.offset, self.calls = spec, offset, 0

    def score(self, levels: list[int], stage: int) -> float:
        self.calls += 1
        spec = self.spec
        dies = spec.die_levels == tuple(levels) or spec.die_at_call == self.calls
        if dies and spec.marker:
            try:  # the first actor to get here dies, once: the marker outlives the process
                os.close(os.open(spec.marker, os.O_CREAT | os.O_EXCL))
                os._exit(1)
            except FileExistsError:
                pass
        if spec.delay:
            time.sleep(spec.delay * (sum(levels) % 3))  # so completion order differs from input order
        return sum((a - b) ** 2 for a, b in zip(levels, spec.optimum, strict=True)) + 0.01 * stage + self.offset

    def prescreen(self, levels: list[int]) -> float:
        return -float(sum(levels))


@dataclass(frozen=True)
class FakeSpec:
    """A WorkerSpec whose 'supernet' is a float offset, and whose actor can be made to die."""

    optimum: tuple[int, ...]
    delay: float = 0.0  # seconds per (sum(levels) % 3)
    die_levels: tuple[int, ...] | None = None  # the actor scoring these levels dies (once, see marker)
    die_at_call: int | None = None  # or the actor making its n-th call
    marker: str = ""  # file created by the one death

    def state(self, supernet: float) -> float:
        return supernet

    def build(self, state: float) -> FakeEvaluator:
        return FakeEvaluator(self, state)

    def use(self, evaluator: FakeEvaluator, state: float) -> None:
        evaluator.offset = state


def fake_pool(spec: FakeSpec, *, workers: int = 2, max_restarts: int = 3, stages: int = 3) -> EvaluatorPool:
    return EvaluatorPool(spec, 0.0, workers=workers, cfg=RayConfig(max_restarts=max_restarts),
                         stage_tokens=[64 * 2**s for s in range(stages)], proxy_name="quadratic",
                         prescreen="params")  # fmt: skip


def expected(levels, optimum, stage: int, offset: float = 0.0) -> float:
    return sum((a - b) ** 2 for a, b in zip(levels, optimum, strict=True)) + 0.01 * stage + offset


def test_pool_keeps_input_order_caches_and_marks_a_dead_actor_none(tmp_path: Path) -> None:
    optimum = (2, 2, 2)
    die = (9, 9, 9)
    spec = FakeSpec(optimum, delay=0.05, die_levels=die, marker=str(tmp_path / "died"))
    batch = [[3, 1, 0], [0, 0, 1], [3, 1, 0], [1, 2, 3], [4, 4, 1], [2, 2, 2]]
    with fake_pool(spec) as pool:
        assert pool.stages == 3 and pool.prescreener
        assert pool.score_many(batch, 1) == [expected(lv, optimum, 1) for lv in batch]
        assert pool.evaluations == 5, "a duplicate in the batch was scored twice"
        assert pool.forward_tokens == 5 * 128
        assert pool.score_many(batch[::-1], 1) == [expected(lv, optimum, 1) for lv in batch[::-1]]
        assert pool.evaluations == 5, "a cached candidate was scored again"
        assert pool.prescreen_many(batch[:2]) == [-4.0, -1.0]
        assert pool.evaluations == 5  # prescreens are not evaluations, as in Evaluator

        values = pool.score_many([[0, 1, 2], die, [2, 1, 0]], 2)
        assert values == [expected([0, 1, 2], optimum, 2), None, expected([2, 1, 0], optimum, 2)]
        assert sorted(pool.deaths) == [0, 1]

        pool.use(0.5)  # another supernet: the cache no longer applies; the restarted actor catches up
        values = pool.score_many([die, *batch[:3]], 0)
        assert values == [expected(lv, optimum, 0, 0.5) for lv in [die, *batch[:3]]]
        assert pool.score(die, 2) == expected(die, optimum, 2, 0.5)


def test_pool_without_restarts_fails_loudly_when_every_actor_is_gone(tmp_path: Path) -> None:
    spec = FakeSpec((1, 1), die_levels=(0, 0), marker=str(tmp_path / "died"))
    with fake_pool(spec, workers=1, max_restarts=0, stages=1) as pool:
        assert pool.score_many([[1, 2], [0, 0]], 0) == [1.0, None]
        with pytest.raises(RuntimeError, match="every Ray worker died"):
            pool.score_many([[2, 2]], 0)


def test_search_completes_and_loses_no_trial_when_an_actor_dies_mid_trial(grid, optimum, tmp_path: Path) -> None:
    cfg = SearchConfig(sampler="evo", trials=24, offspring=4, stage_tokens=[64, 128, 256], survivors=[2, 1, 1])
    study = optuna.create_study(sampler=make_sampler(cfg, grid, seed=0))
    enqueue_warm_starts(study, grid, {"uniform": list(grid.target)})
    spec = FakeSpec(tuple(optimum), die_at_call=9, marker=str(tmp_path / "died"))
    with fake_pool(spec) as pool:
        Search(cfg, study, grid, pool, progress=False).run()
        assert sum(pool.deaths) == 1, f"expected one death, saw {pool.deaths}"

    trials = study.get_trials()
    assert finished_count(study) >= cfg.trials
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == 1
    twins = [t for t in trials if t.user_attrs.get("requeued_from") == failed[0].number]
    assert len(twins) == 1 and twins[0].state == TrialState.COMPLETE
    assert twins[0].params == failed[0].params
    for t in trials:
        if t.state == TrialState.COMPLETE:
            assert t.value == expected(t.user_attrs["levels"], optimum, 2)


def run_config(workers: int, address: str | None):
    from search.app.config import RunConfig
    from supernet.io.data import DataConfig
    from supernet.io.loading import ModelConfig

    return RunConfig(
        model=ModelConfig(reference="tiny"),
        data=DataConfig(seq_len=64, calib_sequences=8, eval_seq_len=64, eval_sequences=4),
        search=SearchConfig(
            sampler="evo", trials=12, offspring=4, stage_tokens=[128, 256, 512], survivors=[2, 1, 1], workers=workers
        ),  # fmt: skip
        ray=RayConfig(address=address),
        seed=3,
        progress=False,
    )


def test_one_and_two_actors_give_the_same_allocation(
    tiny_reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import search.app.pipeline
    from search.app.evaluator import make_evaluator
    from search.app.run import run

    pools = []

    def recorded(*args, **kwargs):  # closed below even if run() fails, so a leftover actor cannot stall the next
        pools.append(make_evaluator(*args, **kwargs))
        return pools[-1]

    monkeypatch.setattr(search.app.pipeline, "make_evaluator", recorded)
    runs = {}
    for name, workers, address in (("one", 1, "local"), ("two", 2, None)):
        try:
            metrics = run(run_config(workers, address), tmp_path / name)
        finally:
            for pool in pools:
                pool.close()
        assert isinstance(pools[-1], EvaluatorPool) and pools[-1].workers == workers
        allocation = json.loads((tmp_path / name / "allocation.json").read_text())
        trials = [(t.number, t.state, t.params, t.value, t.intermediate_values) for t in study_of(tmp_path / name)]
        runs[name] = (allocation, metrics["search"]["best_fitness"], metrics["baselines"], trials)
    assert len(runs["one"][3]) >= 12
    assert runs["one"] == runs["two"]  # every trial and every value, bit for bit


def study_of(run_dir: Path) -> list[optuna.trial.FrozenTrial]:
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(run_dir / "study.journal")))
    return optuna.load_study(study_name="strata", storage=storage).get_trials()
