"""The search loop: ask a generation of trials, score them stage by stage, tell Optuna the results.

Evolution (``sampler=evo``) with multi-stage selection (EvoPress, Týr): each generation asks
``offspring`` trials of the current parent; an optional zero-shot proxy prescreens them; stage ``s``
scores the remaining ones on ``stage_tokens[s]`` fitness tokens (search/fitness.py), reports it as the
trial's intermediate value at step ``s``, and only the best ``survivors[s]`` go on; the rest are PRUNED.
The last stage's best ``survivors[-1]`` COMPLETE with their last-stage value (the trials that complete
per generation), so every complete value is on the same tokens. Optuna's own samplers (tpe, cmaes, nsga2,
nsga3, random: ``make_sampler``) propose anywhere; their proposals are repaired onto the budget
(supernet.space.repair.repair) and scored on the last stage. Warm starts (the no-search allocators) are scored
on the last stage directly.

A killed search resumes as if it had not stopped (the run's own journal, ``replay``): each generation
records its index and size in the study (user attribute ``generation``) and each trial its generation;
on restart the trials the kill left running are re-enqueued with their generation and the last stage they
reached (search/study.py), and :meth:`Search.finish_interrupted` plays the rest of that generation from
that stage, filling slots never asked with the proposals they would have had (search/evolution.py).

A trial whose score is not finite (NaN, inf) FAILs at once, with the reason in its user attribute
``fail_reason``, and takes no part in selection; failed trials do not count towards ``trials``. After
``max_failed_trials`` failed trials in a row with none completing (weights holding NaN, broken data: every
trial fails) the driver stops with a :class:`~supernet.errors.UsageError` naming the last failure, instead
of asking again forever (checked after each generation).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState
from tqdm.auto import tqdm

from search.evolution import FAIL_REASON, EvolutionSampler, param_names, search_space
from search.study import finished_count
from supernet.errors import UsageError, check_choice
from supernet.space.repair import repair

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from search.fitness import Evaluator
    from supernet.space.grid import LevelGrid

    CompleteHook = Callable[[optuna.Study, optuna.Trial, list[int], float], None]

log = logging.getLogger(__name__)

GENERATION_KEY = "generation"  # study and trial user attribute: the generation a trial belongs to
SAMPLERS = ("none", "evo", "tpe", "cmaes", "nsga2", "nsga3", "random")
MULTI_OBJECTIVE_SAMPLERS = ("nsga2", "nsga3", "tpe", "random")  # Optuna samplers with several objectives
SECOND_OBJECTIVES = ("params", "flops")
FITNESS_WINDOWS = ("held_apart", "calibration")


@dataclass
class SearchConfig:
    sampler: str = "evo"  # evo | tpe | cmaes | nsga2 | nsga3 | random | none (the `allocator` alone, no search)
    trials: int = 200  # finished trials (complete + pruned), counted across restarts
    offspring: int = 16  # lambda: trials asked per generation (evo); free samplers ask one at a time
    stage_tokens: list[int] = field(default_factory=lambda: [1024, 2048, 8192])  # tokens per selection stage
    survivors: list[int] = field(default_factory=lambda: [4, 2, 1])  # kept after each stage; last = trials that
    # complete per generation (the rest of the last stage are PRUNED)
    fitness: str = "held_apart"  # windows candidates are scored on: held_apart (train windows the supernet was not
    # fitted on) | calibration (the calibration windows themselves)
    resample: bool = False  # stages before the last draw fresh windows every generation (from the last stage's)
    max_pairs: int = 4  # most level switches per offspring (Týr: 4)
    prescreen: str | None = None  # zero-shot proxy ranking offspring before the first stage (e.g. params, flops)
    prescreen_keep: int = 8  # offspring that pass the prescreen
    warm_start: list[str] = field(default_factory=lambda: ["uniform", "flap_global", "depth_linear"])
    storage: str | None = None  # Optuna storage URL; None = journal file study.journal in the run directory
    study_name: str = "strata"  # the study in that storage (a rerun with the same name resumes it)
    stale_after: float = 3600.0  # shared storage: a trial RUNNING this long (s) is a dead driver's, re-enqueued
    iterations: int = 1  # coarse-to-fine rounds (Týr): each re-centres the grid on the best with half the step
    multi_objective: str | None = None  # params | flops: also minimise kept params/FLOPs; writes pareto.json
    workers: int = 1  # evaluators: 1 = in-process; N > 1 = N Ray actors (one per GPU), see `ray` (search/workers.py)
    heal_tokens: int = 0  # training-aware selection (DarwinLM): each candidate of the last stage is healed this
    # many tokens with the heal settings before its score (search/heal/selection.py); 0 = off. Needs proxy=kl|ppl
    heal_batch_tokens: int = 2048  # tokens per optimizer step of that heal (several steps even for few tokens)
    heal_lr: float | None = None  # peak learning rate of that heal; None = heal.lr (a short probe may want more)
    max_failed_trials: int = 50  # stop with an error once this many trials in a row failed (a NaN/inf score, a lost
    # worker) with none completing since: every trial failing means broken weights or data, not a bad candidate

    def __post_init__(self) -> None:
        check_choice("search.sampler", self.sampler, SAMPLERS)
        if self.trials < 1 or self.offspring < 1:
            raise UsageError(f"search.trials={self.trials} and search.offspring={self.offspring} must be >= 1")
        if not self.stage_tokens or len(self.stage_tokens) != len(self.survivors):
            raise UsageError(
                f"search.stage_tokens {self.stage_tokens} and search.survivors {self.survivors} "
                "need one entry per stage"
            )
        if any(b < a for a, b in zip(self.stage_tokens, self.stage_tokens[1:], strict=False)):
            raise UsageError(f"search.stage_tokens={self.stage_tokens} must not decrease")
        if min(self.survivors) < 1:
            raise UsageError(f"search.survivors={self.survivors} must all be >= 1")
        if self.iterations < 1:
            raise UsageError(f"search.iterations={self.iterations} must be >= 1")
        if self.workers < 1:
            raise UsageError(f"search.workers={self.workers} must be >= 1 (1 = score in this process)")
        if self.heal_tokens < 0 or self.heal_batch_tokens < 1:
            raise UsageError(
                f"search.heal_tokens={self.heal_tokens} must be >= 0 (0 = off) and "
                f"search.heal_batch_tokens={self.heal_batch_tokens} >= 1"
            )
        if self.heal_lr is not None and not self.heal_lr > 0:
            raise UsageError(f"search.heal_lr={self.heal_lr} must be > 0 (or null: heal.lr)")
        if self.max_failed_trials < 1:
            raise UsageError(f"search.max_failed_trials={self.max_failed_trials} must be >= 1")
        check_choice("search.fitness", self.fitness, FITNESS_WINDOWS)
        if self.resample and self.workers > 1:
            raise UsageError("search.resample=true scores in this process only: use search.workers=1")
        if self.multi_objective is not None:
            check_choice("search.multi_objective", self.multi_objective, SECOND_OBJECTIVES)
            if self.sampler not in MULTI_OBJECTIVE_SAMPLERS:
                choices = "|".join(MULTI_OBJECTIVE_SAMPLERS)
                raise UsageError(f"search.multi_objective needs a multi-objective sampler: search={choices}")


def make_sampler(cfg: SearchConfig, grid: LevelGrid, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``cfg.sampler`` (registry, not if-chains)."""
    samplers = {
        "evo": lambda: EvolutionSampler(grid, seed=seed, max_pairs=cfg.max_pairs),
        "tpe": lambda: optuna.samplers.TPESampler(seed=seed),
        "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=seed),
        "nsga2": lambda: optuna.samplers.NSGAIISampler(seed=seed),
        "nsga3": lambda: optuna.samplers.NSGAIIISampler(seed=seed),
        "random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    if cfg.sampler not in samplers:
        raise UsageError(f"search.sampler={cfg.sampler!r} does not search: use one of {', '.join(samplers)}")
    return samplers[cfg.sampler]()


def enqueue_warm_starts(study: optuna.Study, grid: LevelGrid, starts: dict[str, list[int]]) -> None:
    """Enqueue the no-search allocations once (a resumed study already has them)."""
    if study.get_trials(deepcopy=False):
        return
    names = param_names(grid)
    seen = set()
    for name, levels in starts.items():
        if tuple(levels) not in seen:
            seen.add(tuple(levels))
            study.enqueue_trial(dict(zip(names, levels, strict=True)), user_attrs={"warm_start": name})


class Search:
    """Drives one study to ``cfg.trials`` finished trials with an evaluator."""

    def __init__(
        self,
        cfg: SearchConfig,
        study: optuna.Study,
        grid: LevelGrid,
        evaluator: Evaluator,
        *,
        progress: bool = True,
        on_complete: Sequence[CompleteHook] = (),
        second_objective: Callable[[list[int]], float] | None = None,
        desc: str = "search",
        replay: bool = True,
    ) -> None:
        self.cfg = cfg
        self.study = study
        self.grid = grid
        self.evaluator = evaluator
        self.names = param_names(grid)
        self.space = search_space(grid)
        self.progress = progress
        self.on_complete = list(on_complete)  # called for each trial about to COMPLETE (artifact uploads, ...)
        # multi-objective mode: proposals are not repaired; the second value is e.g. the kept-params fraction
        self.second_objective = second_objective
        self.desc = desc
        self.replay = replay  # resume a killed generation exactly (one driver per study: the run's own journal)
        self.last_stage = evaluator.stages - 1
        self.failed_in_row = 0  # trials failed since the last one that completed (in this process)
        self.last_failure: str | None = None  # why the last trial failed
        assert len(cfg.survivors) == evaluator.stages, f"{len(cfg.survivors)} survivors for {evaluator.stages} stages"

    def run(self) -> optuna.Study:
        start = time.perf_counter()
        done = finished_count(self.study)
        with tqdm(total=self.cfg.trials, initial=done, desc=self.desc, unit="trial", disable=not self.progress) as bar:
            if self.replay:
                self.finish_interrupted()
            while (done := finished_count(self.study)) < self.cfg.trials or (waiting := self.waiting()):
                batch = self.cfg.offspring if self.cfg.sampler == "evo" else 1
                size = min(batch, self.cfg.trials - done) if done < self.cfg.trials else waiting
                self.generation(size)
                self.check_failures()
                bar.update(finished_count(self.study) - bar.n)
                best = self.best_value()
                if best is not None:
                    bar.set_postfix(best=f"{best:.4g}")
        log.info("search finished %d trials in %.1f s", finished_count(self.study), time.perf_counter() - start)
        return self.study

    def check_failures(self) -> None:
        """Stop once ``max_failed_trials`` trials in a row failed with none completing since."""
        if self.failed_in_row >= self.cfg.max_failed_trials:
            raise UsageError(
                f"search.max_failed_trials={self.cfg.max_failed_trials}: {self.failed_in_row} trials in a row failed "
                f"with none completing since; the last: {self.last_failure}. Check the model's weights (NaN/inf after "
                "loading or calibration?) and the data windows (empty, or tokens outside the vocabulary?)"
            )

    def fail(self, trial: optuna.Trial, reason: str) -> None:
        """Tell ``trial`` FAIL for ``reason`` (kept in its user attribute ``fail_reason``) and count it."""
        trial.set_user_attr(FAIL_REASON, reason)
        self.study.tell(trial, state=TrialState.FAIL)
        log.warning("%s: failed", reason)
        self.failed(reason)

    def failed(self, reason: str) -> None:
        """Count one more failed trial since the last that completed."""
        self.failed_in_row += 1
        self.last_failure = reason

    def next_generation(self) -> int:
        info = self.study.user_attrs.get(GENERATION_KEY)
        return 0 if info is None else int(info["index"]) + 1

    def finish_interrupted(self) -> None:
        """Play the rest of the generation a killed run left: its re-enqueued trials from the earliest stage
        they reached, and the slots it had not asked yet, so the study goes on as an uninterrupted run."""
        info = self.study.user_attrs.get(GENERATION_KEY)
        if info is None:
            return
        index = int(info["index"])
        members = [t for t in self.study.get_trials(deepcopy=False) if t.user_attrs.get(GENERATION_KEY) == index]
        left = int(info["size"]) - sum(1 for t in members if self.settled(t))
        if left <= 0:
            return
        staged = [t for t in members if t.state == TrialState.WAITING and "warm_start" not in t.user_attrs]
        start = min((int(t.user_attrs.get("resume_stage", 0)) for t in staged), default=0)
        log.info("finishing generation %d a killed run left: %d trials from stage %d", index, left, start)
        self.generation(left, index=index, start=start)

    @staticmethod
    def settled(trial: optuna.trial.FrozenTrial) -> bool:
        """Whether a generation's trial is done for good: finished, or failed on a non-finite score (not
        re-enqueued, unlike a killed run's or a lost worker's)."""
        finished = trial.state in (TrialState.COMPLETE, TrialState.PRUNED)
        return finished or (trial.state == TrialState.FAIL and FAIL_REASON in trial.user_attrs)

    def waiting(self) -> int:
        """Enqueued trials not yet asked (re-enqueued after a kill): they run even past the cap."""
        return len(self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))

    def best_value(self) -> float | None:
        done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        return min((t.values[0] for t in done), default=None)

    def ask(self, generation: int) -> tuple[optuna.Trial, list[int], bool]:
        """One trial, its levels (on budget unless multi-objective), and whether it skips to the last stage."""
        trial = self.study.ask(self.space)
        trial.set_user_attr(GENERATION_KEY, generation)
        raw = [int(trial.params[name]) for name in self.names]
        free = self.second_objective is not None or self.grid.on_budget(raw)
        levels = raw if free else repair(self.grid, raw)
        trial.set_user_attr("levels", levels)
        trial.set_user_attr("kept_params", self.grid.params(levels))
        trial.set_user_attr("feasible", self.grid.cost(levels) <= self.grid.budget)
        if levels != raw:
            trial.set_user_attr("raw_levels", raw)
        attrs = trial.user_attrs
        # warm starts, and trials a lost Ray worker left (re-enqueued in this process, no stage to resume from)
        enqueued = "warm_start" in attrs or ("requeued_from" in attrs and "resume_stage" not in attrs)
        direct = enqueued or self.cfg.sampler != "evo"
        return trial, levels, direct

    def generation(self, size: int, *, index: int | None = None, start: int = 0) -> None:
        """Ask ``size`` trials and select them stage by stage from stage ``start``; ``index`` None starts
        a new generation (recorded in the study before its first trial), else replays generation ``index``."""
        if index is None:
            index = self.next_generation()
            self.study.set_user_attr(GENERATION_KEY, {"index": index, "size": size})
        if self.cfg.resample:  # the draw is the generation's index: a replayed generation draws the same
            self.evaluator.redraw(index)
        asked = [self.ask(index) for _ in range(size)]
        direct = [(t, lv) for t, lv, d in asked if d]
        staged = [(t, lv) for t, lv, d in asked if not d]
        if direct:
            direct, values = self.score(direct, self.last_stage)
            for (trial, levels), value in zip(direct, values, strict=True):
                self.complete(trial, levels, value)
        if start == 0 and staged and self.evaluator.prescreener is not None and len(staged) > self.cfg.prescreen_keep:
            scores = self.evaluator.prescreen_many([lv for _, lv in staged])
            staged, values = self.kept(staged, scores, f"prescreen {self.cfg.prescreen}")
            for (trial, _), value in zip(staged, values, strict=True):
                trial.set_user_attr(f"prescreen_{self.cfg.prescreen}", value)
            staged, _ = self.select(staged, values, self.cfg.prescreen_keep)
        for stage in range(start, self.evaluator.stages):
            staged, values = self.score(staged, stage)
            staged, values = self.select(staged, values, self.cfg.survivors[stage])
        for (trial, levels), value in zip(staged, values, strict=True):
            self.complete(trial, levels, value)

    def score(self, batch: list[tuple[optuna.Trial, list[int]]], stage: int) -> tuple[list, list[float]]:
        """Score a batch on one stage (spread over the evaluator's workers); record it; drop lost trials."""
        scores = self.evaluator.score_many([levels for _, levels in batch], stage)
        batch, values = self.kept(batch, scores, f"{self.evaluator.proxy_name} at stage {stage}")
        for (trial, _), value in zip(batch, values, strict=True):
            if self.second_objective is None:  # Optuna keeps intermediate values of single-objective studies only
                trial.report(value, stage)
            trial.set_user_attr(f"{self.evaluator.proxy_name}_stage{stage}", value)
            trial.set_user_attr(f"tokens_stage{stage}", self.evaluator.stage_tokens[stage])
        return batch, values

    def kept(self, batch: list, values: list[float | None], what: str) -> tuple[list, list[float]]:
        """The trials that got a finite value (``what``: the score's name, for the log). A None means the worker
        scoring it died: fail and re-enqueue it; a NaN or inf fails it for good (scoring it again gives the same)."""
        out, out_values = [], []
        for (trial, levels), value in zip(batch, values, strict=True):
            if value is None:
                self.study.tell(trial, state=TrialState.FAIL)
                self.study.enqueue_trial(trial.params, user_attrs={"requeued_from": trial.number})
                log.warning("trial %d lost its worker: failed and re-enqueued", trial.number)
                self.failed(f"trial {trial.number} lost its worker (re-enqueued)")
            elif not math.isfinite(value):
                self.fail(trial, f"trial {trial.number} scored {value} ({what})")
            else:
                out.append((trial, levels))
                out_values.append(value)
        return out, out_values

    def complete(self, trial: optuna.Trial, levels: list[int], value: float) -> None:
        """Run the hooks while the trial still takes attributes and artifacts, then tell its value(s)."""
        for hook in self.on_complete:
            hook(self.study, trial, levels, value)
        if self.second_objective is None:
            self.study.tell(trial, value)
        else:
            self.study.tell(trial, [value, self.second_objective(levels)])
        self.failed_in_row = 0

    def select(self, staged: list, values: list[float], keep: int) -> tuple[list, list[float]]:
        """Keep the ``keep`` lowest values (ties: lower trial number); prune the others."""
        order = sorted(range(len(staged)), key=lambda i: (values[i], staged[i][0].number))
        kept = sorted(order[:keep])
        for i in order[keep:]:
            self.study.tell(staged[i][0], state=TrialState.PRUNED)
        return [staged[i] for i in kept], [values[i] for i in kept]
