"""Score candidates on Ray actors: each holds the model and the supernet, built once.

``search.workers=N`` (N > 1) or ``ray.address`` set puts N :class:`search.actor.EvaluatorActor` s on Ray (one per GPU
with ``device=cuda``, or ``ray.num_gpus`` GPUs each that its model is spread over; else ``ray.num_cpus`` CPUs
each). Every actor wraps the same :class:`search.fitness.Evaluator` the in-process run uses, built inside the actor
from plain data: the
model directory, the fitness windows and the supernet's cache form (rankings and compensation,
sent once through the object store as safetensors bytes, so actors never calibrate).

:class:`EvaluatorPool` has the Evaluator's interface (``stages``, ``stage_tokens``, ``proxy_name``,
``prescreener``, ``score``, ``score_many``, ``prescreen_many``, ``use``, ``close``, ``evaluations``,
``forward_tokens``, ``healed``), so the driver (search/driver.py) cannot tell them apart. It keeps one candidate
in flight per actor and returns values in input order, so the order of trials is the driver's, never
the order of completion.
Each actor pins ``torch.set_num_threads(ray.threads_per_worker)``: floating-point reductions, hence
fitness values, are the same on every actor, and the same seed gives the same allocation with 1 or N
workers. An actor that dies mid-candidate yields ``None`` for that candidate (the driver fails and
re-enqueues its trial); Ray restarts the actor (``max_restarts``) and the pool keeps going.
A no-op actor call costs ~1.5 ms here (bench/workers.py); REFERENCES.md measured ~90 ms per trial for
plain actors driven by ask-and-tell on 2 CPUs, against ~770 ms for Ray Tune's OptunaSearch.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search.actor import EvaluatorActor
from supernet.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from search.actor import WorkerSpec

log = logging.getLogger(__name__)

Key = tuple[tuple[int, ...], int]  # (levels, stage); stage -1 = the prescreen proxy
SCORE_ATTEMPTS = 3  # tries of a lone ``score`` (baselines, the winner) whose actor dies
PROBE_SECONDS = 0.5  # wait between readiness probes of an actor Ray is restarting
PLACEMENT_WARN_SECONDS = 120  # say so when actors are still not ready (placed and built) after this


@dataclass
class RayConfig:
    # null: a private local Ray, started only when search.workers > 1; "local": the same, even for one
    # worker; "auto": join the running cluster (`ray start`, or $RAY_ADDRESS); "host:port" or
    # "ray://host:port": join that cluster (every node needs strata installed and model.path readable)
    address: str | None = None
    num_cpus: float | None = None  # CPUs reserved per actor; null = threads_per_worker
    # GPUs per actor; null = 1 when device is cuda (one actor per GPU), else 0; more than 1: the actor spreads its
    # model over its GPUs (accelerate's device map, supernet/io/placement.py), for a model bigger than one GPU
    num_gpus: float | None = None
    threads_per_worker: int = 1  # torch threads in each actor, fixed so every actor computes bit-identical fitness
    max_restarts: int = 3  # times Ray restarts a dead actor (-1 = always); its candidate's trial is re-enqueued

    def __post_init__(self) -> None:
        if self.threads_per_worker < 1:
            raise UsageError(f"ray.threads_per_worker={self.threads_per_worker} must be >= 1")
        if self.max_restarts < -1:
            raise UsageError(f"ray.max_restarts={self.max_restarts} must be >= 0, or -1 for always")
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"ray.{name}={value} must be >= 0 (or null for the default)")


def start_ray(cfg: RayConfig) -> bool:
    """Connect to Ray as ``cfg.address`` says; True when this call started it (so ``close`` stops it).

    A Ray already initialised in this process (a notebook, a test) is used as it is."""
    import ray

    if ray.is_initialized():
        return False
    address = cfg.address or "local"  # null must not join some other Ray found in /tmp/ray
    if address == "local":
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return True


def stop_actors(actors: list) -> None:
    """Kill actors for good (a finalizer: it must not refer to the pool)."""
    import ray

    if ray.is_initialized():
        for actor in actors:
            ray.kill(actor, no_restart=True)


class EvaluatorPool:
    """The Evaluator interface over Ray actors: a batch is spread with one candidate in flight per actor.

    Values come back in input order; ``None`` marks a candidate whose actor died (the driver fails and
    re-enqueues its trial). Scores are cached per (levels, stage), so a candidate is scored once.
    Actors stop at ``close()``, or when the pool is garbage-collected; a score asked later starts them again.
    """

    def __init__(self, spec: WorkerSpec, supernet: Any, *, workers: int, cfg: RayConfig, stage_tokens: Sequence[int],
                 proxy_name: str, prescreen: str | None = None, gpus: float = 0.0,
                 heals: bool = False) -> None:  # fmt: skip
        assert workers >= 1, f"{workers} workers"
        self.spec, self.workers, self.cfg = spec, workers, cfg
        self.stage_tokens = [int(t) for t in stage_tokens]
        self.proxy_name = proxy_name
        self.prescreener = prescreen  # truthy when a prescreen proxy is configured (the driver's test)
        self.cpus = cfg.threads_per_worker if cfg.num_cpus is None else cfg.num_cpus
        self.gpus = gpus if cfg.num_gpus is None else cfg.num_gpus
        self.cache: dict[Key, float] = {}
        self.evaluations = 0  # proxy calls that returned (cache hits and lost candidates excluded)
        self.forward_tokens = 0  # tokens those calls pushed through the model
        self.heals = heals  # the actors heal last-stage candidates before scoring them (search.heal_tokens)
        self.healed = 0  # last-stage calls that returned while ``heals``
        self.actors: list = []
        self.deaths: list[int] = []  # per actor: deaths seen so far
        self.recovering: set[int] = set()  # died; probed until Ray has restarted them
        self.dropped: set[int] = set()  # died more than max_restarts times, or for good
        self.finalizer: weakref.finalize | None = None
        self.current: Any = None  # the supernet scored through
        self.owns_ray = start_ray(cfg)
        self.use(supernet)
        self.open()

    @property
    def stages(self) -> int:
        return len(self.stage_tokens)

    def use(self, supernet: Any) -> None:
        """Score through ``supernet`` from now on (coarse-to-fine), as ``Evaluator.use``; the cache is
        cleared, since levels now index its grid (the same supernet again keeps it)."""
        import ray

        if self.current is supernet:
            return
        self.current = supernet
        self.supernet = [ray.put(self.spec.state(supernet))]  # in a list: actors resolve it themselves
        self.cache.clear()

    def check_resources(self) -> None:
        """Refuse (private Ray) or warn (a cluster, which may scale) when the actors cannot all be placed."""
        import ray

        have = ray.cluster_resources()
        for name, each in (("CPU", self.cpus), ("GPU", self.gpus)):
            need = self.workers * each
            if need > have.get(name, 0.0):
                message = (f"search.workers={self.workers} actors need {need:g} {name}s ({each:g} each) but Ray "
                           f"has {have.get(name, 0.0):g}: lower search.workers or ray.num_{name.lower()}s")  # fmt: skip
                if self.owns_ray:
                    self.close()
                    raise UsageError(message)
                log.warning("%s (waiting for the cluster to provide them)", message)

    def open(self) -> None:
        """Start the actors and wait until each has built its evaluator."""
        import ray

        self.check_resources()
        remote = ray.remote(EvaluatorActor).options(
            num_cpus=self.cpus, num_gpus=self.gpus, max_restarts=self.cfg.max_restarts, max_task_retries=0
        )
        self.actors = [remote.remote(self.spec, self.cfg.threads_per_worker) for _ in range(self.workers)]
        self.deaths, self.recovering, self.dropped = [0] * self.workers, set(), set()
        self.finalizer = weakref.finalize(self, stop_actors, list(self.actors))
        try:
            waiting = [actor.ready.remote(self.supernet) for actor in self.actors]
            while waiting:  # an actor Ray cannot place yet waits for resources (a cluster may scale up)
                done, waiting = ray.wait(waiting, num_returns=len(waiting), timeout=PLACEMENT_WARN_SECONDS)
                ray.get(done)
                if waiting:
                    log.warning("%d of %d Ray workers not ready after %d s (Ray has %s free)", len(waiting),
                                self.workers, PLACEMENT_WARN_SECONDS, ray.available_resources())  # fmt: skip
        except ray.exceptions.RayError:
            self.close()
            raise
        log.info("%d Ray workers ready (%g CPUs, %g GPUs each)", self.workers, self.cpus, self.gpus)

    def alive(self) -> list[int]:
        """Indices of the actors not given up on (Ray restarts them, or they never died)."""
        return [i for i in range(len(self.actors)) if i not in self.dropped]

    def died(self, index: int, exc: Exception) -> None:
        """Actor ``index`` lost its candidate: count the death, then wait for Ray's restart, or give up."""
        if getattr(exc, "actor_init_failed", False):
            raise RuntimeError(f"a Ray worker could not build its evaluator: {exc}") from exc
        self.deaths[index] += 1
        limit = self.cfg.max_restarts
        log.warning("Ray worker %d died (%d times): its candidate is lost", index, self.deaths[index])
        if 0 <= limit < self.deaths[index]:
            self.dropped.add(index)
        else:
            self.recovering.add(index)

    def probe_failed(self, index: int, exc: Exception) -> bool:
        """A readiness probe failed; True when the actor is still restarting (probe again)."""
        if getattr(exc, "actor_init_failed", False):
            raise RuntimeError(f"a restarted Ray worker could not build its evaluator: {exc}") from exc
        import ray

        if isinstance(exc, ray.exceptions.ActorDiedError):  # dead for good: Ray has no restart left
            log.warning("Ray worker %d is gone for good", index)
            self.recovering.discard(index)
            self.dropped.add(index)
            return False
        time.sleep(PROBE_SECONDS)  # "the actor is restarting": Ray refuses calls until it is back
        return True

    def call(self, index: int, key: Key | None):
        """Submit to actor ``index``: a readiness probe (None), the prescreen proxy (stage -1) or a stage's."""
        actor = self.actors[index]
        if key is None:
            return actor.ready.remote(self.supernet)
        if key[1] < 0:
            return actor.prescreen.remote(list(key[0]), self.supernet)
        return actor.score.remote(list(key[0]), key[1], self.supernet)

    def run(self, keys: list[Key]) -> None:
        """Score ``keys`` (unique, uncached) with one in flight per live actor; cache what returns.

        An actor that died is probed until Ray has restarted it (calls made meanwhile would fail)."""
        import ray

        if keys and not self.actors:
            log.info("starting %d Ray workers again for a score asked after close()", self.workers)
            self.open()
        queue = deque(keys)
        pending: dict[Any, tuple[int, Key | None]] = {}  # call -> (actor, candidate; None = probe)
        idle = [i for i in self.alive() if i not in self.recovering]
        for index in self.recovering:
            pending[self.call(index, None)] = (index, None)
        while queue or any(key is not None for _, key in pending.values()):
            if not idle and not pending:
                raise RuntimeError(f"every Ray worker died more than ray.max_restarts={self.cfg.max_restarts} times")
            while queue and idle:
                index, key = idle.pop(0), queue.popleft()
                pending[self.call(index, key)] = (index, key)
            done, _ = ray.wait(list(pending), num_returns=1)
            index, key = pending.pop(done[0])
            try:
                value = ray.get(done[0])
            except ray.exceptions.RayActorError as exc:
                if key is not None:
                    self.died(index, exc)
                again = index in self.recovering if key is not None else self.probe_failed(index, exc)
                if again:
                    pending[self.call(index, None)] = (index, None)
                continue
            if key is None:
                self.recovering.discard(index)
            else:
                self.cache[key] = value
                self.evaluations += int(key[1] >= 0)  # as Evaluator: prescreens are not evaluations
                self.forward_tokens += self.stage_tokens[max(key[1], 0)]
                self.healed += int(self.heals and key[1] == self.stages - 1)
            idle.append(index)

    def values(self, batch: Sequence[Sequence[int]], stage: int) -> list[float | None]:
        keys = [(tuple(int(lv) for lv in levels), stage) for levels in batch]
        self.run([key for key in dict.fromkeys(keys) if key not in self.cache])
        return [self.cache.get(key) for key in keys]

    def score_many(self, batch: Sequence[Sequence[int]], stage: int) -> list[float | None]:
        """Proxy value of every allocation in ``batch`` on stage ``stage``, in order; None: its actor died."""
        return self.values(batch, stage)

    def prescreen_many(self, batch: Sequence[Sequence[int]]) -> list[float | None]:
        assert self.prescreener, "no prescreen proxy was configured"
        return self.values(batch, -1)

    def score(self, levels: Sequence[int], stage: int) -> float:
        """One value, asked again if its actor dies (it is no trial the driver could re-enqueue)."""
        for _ in range(SCORE_ATTEMPTS):
            value = self.values([levels], stage)[0]
            if value is not None:
                return value
        raise RuntimeError(f"could not score {list(levels)}: its Ray worker died {SCORE_ATTEMPTS} times")

    def close(self) -> None:
        """Stop the actors, and Ray when this pool started it."""
        import ray

        if self.finalizer is not None:
            self.finalizer()  # kills the actors once
        self.actors = []
        if self.owns_ray and ray.is_initialized():
            ray.shutdown()
            self.owns_ray = False

    def __enter__(self) -> EvaluatorPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
