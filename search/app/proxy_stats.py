"""The proxy report: which proxy ranks candidates the way held-out perplexity does, on this model?

1. Candidates at the budget, spread over the space: the uniform allocation, random level-switch walks
   of varying length from it (each step moves one module up a level and another down one, inside
   the grid, so every candidate is exactly on budget; Týr / EvoPress's mutation), and the no-search
   allocators of ``supernet.space.allocators``. Variants come from the supernet (``supernet.variants.build``).
2. Each candidate is applied in place and scored by every proxy (on the calibration windows) and by
   held-out perplexity (on the eval windows). Every proxy is lower-is-better, like perplexity.
3. Per proxy, against held-out perplexity:
   - Kendall tau and Spearman rho (scipy.stats), tau's 95% interval by a seeded paired percentile
     bootstrap over candidates;
   - top-10% overlap = |top_m(proxy) ∩ top_m(ppl)| / m, m = ceil(0.1 n);
   - regret = ppl(proxy's best candidate) / min ppl - 1;
   - cost per candidate / the time of one forward pass over the calibration windows.
   A proxy constant over the candidates (``params`` on an exact budget) ranks nothing: tau = rho = 0.

The regime measured is "right after pruning, no retraining" ("Is Oracle Pruning the True Oracle?",
2024, https://arxiv.org/abs/2412.00143: it may not predict quality after retraining).

``search.app.proxy_report`` runs it and writes ``proxies.json`` and ``proxies.html``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from supernet.space.moves import random_switch

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from transformers import PreTrainedModel

    from proxies.base import Proxy
    from supernet.space.grid import LevelGrid
    from supernet.variants.build import Supernet

log = logging.getLogger(__name__)

TOP_FRACTION = 0.1  # the "top 10%" of the overlap


# ---- candidates ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Candidate:
    name: str  # "uniform", "walk-<steps>-<i>", or an allocator's name
    levels: tuple[int, ...]  # one level per module, grid order


def walk_candidates(grid: LevelGrid, count: int, *, seed: int, max_walk: int | None = None) -> list[Candidate]:
    """``count`` distinct on-budget candidates: uniform, then walks of 1..max_walk switches from it."""
    rng = random.Random(seed)
    longest = max_walk if max_walk is not None else 2 * len(grid.modules)
    seen = {tuple(grid.target)}
    out = [Candidate("uniform", tuple(grid.target))]
    attempts = 0
    while len(out) < count and attempts < 50 * count and longest > 0:
        attempts += 1
        steps = rng.randint(1, longest)
        levels = list(grid.target)
        for _ in range(steps):
            levels = random_switch(grid, levels, rng.choice) or levels
        assert grid.on_budget(levels), f"walk left the budget: {levels} vs target {grid.target}"
        if tuple(levels) not in seen:
            seen.add(tuple(levels))
            out.append(Candidate(f"walk-{steps}-{len(out)}", tuple(levels)))
    if len(out) < count:
        log.warning("the grid holds only %d distinct candidates near uniform (asked for %d)", len(out), count)
    return out


def allocator_candidates(supernet: Supernet, grid: LevelGrid, keep: float) -> list[Candidate]:
    """One candidate per no-search allocator (``supernet.space.allocators``: uniform, flap_global, ...)."""
    from supernet.space.allocators import ALLOCATORS, allocate

    return [Candidate(name, tuple(allocate(name, supernet, grid, keep))) for name in ALLOCATORS]


# ---- statistics ------------------------------------------------------------------------------------
def _is_constant(values: np.ndarray) -> bool:
    return bool(np.all(values == values[0]))


def kendall_spearman(proxy: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """Kendall tau-b and Spearman rho; 0 for a constant input (no ranking information)."""
    from scipy import stats

    if _is_constant(proxy) or _is_constant(target):
        return 0.0, 0.0
    return float(stats.kendalltau(proxy, target).statistic), float(stats.spearmanr(proxy, target).statistic)


def bootstrap_tau_ci(proxy: np.ndarray, target: np.ndarray, *, resamples: int, seed: int) -> tuple[float, float]:
    """Percentile 95% interval of Kendall tau over paired resamples of the candidates
    (``scipy.stats.bootstrap``, seeded)."""
    from scipy import stats

    result = stats.bootstrap((proxy, target), lambda p, t: kendall_spearman(p, t)[0], paired=True, vectorized=False,
                             n_resamples=resamples, confidence_level=0.95, method="percentile",
                             rng=np.random.default_rng(seed))  # fmt: skip
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def top_overlap(proxy: np.ndarray, target: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """|top_m(proxy) ∩ top_m(target)| / m with m = ceil(fraction * n), both lower-is-better (stable ties)."""
    m = max(1, math.ceil(fraction * len(proxy)))
    best_proxy = set(np.argsort(proxy, kind="stable")[:m].tolist())
    best_target = set(np.argsort(target, kind="stable")[:m].tolist())
    return len(best_proxy & best_target) / m


def regret(proxy: np.ndarray, target: np.ndarray) -> float:
    """target at the proxy's best candidate / best target - 1 (0 = the proxy picks the best)."""
    return float(target[int(np.argmin(proxy))] / np.min(target) - 1.0)


def rank_statistics(proxy: np.ndarray, target: np.ndarray, *, resamples: int, seed: int) -> dict:
    """Every statistic of one proxy against held-out perplexity."""
    tau, rho = kendall_spearman(proxy, target)
    lo, hi = bootstrap_tau_ci(proxy, target, resamples=resamples, seed=seed)
    return {
        "kendall_tau": tau,
        "spearman_rho": rho,
        "tau_ci95": [lo, hi],
        "top10_overlap": top_overlap(proxy, target),
        "regret": regret(proxy, target),
        "constant": _is_constant(proxy),
    }


# ---- scoring ---------------------------------------------------------------------------------------
@torch.no_grad()
def forward_seconds(model: PreTrainedModel, batches: Sequence[torch.Tensor], repeats: int = 3) -> float:
    """Median wall time of one no-grad forward pass over all ``batches``."""
    device = next(model.parameters()).device
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in batches:
            model(input_ids=batch.to(device))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def score_candidates(
    model: PreTrainedModel,
    apply: Callable[[Sequence[int] | None], None],
    candidates: Sequence[Candidate],
    proxies: dict[str, Proxy],
    *,
    calib: Sequence[torch.Tensor],
    held_out: torch.Tensor,
    batch_size: int,
    progress: bool,
) -> tuple[dict[str, list[float]], list[float], dict[str, float]]:
    """Proxy scores and held-out ppl per candidate, and mean seconds per candidate per proxy.

    ``apply(levels)`` installs a candidate (``None``: the dense model, needed by ``prepare``).
    """
    from supernet.io.perplexity import perplexity

    apply(None)
    for proxy in proxies.values():
        proxy.prepare(model, calib)
    scores: dict[str, list[float]] = {name: [] for name in proxies}
    seconds: dict[str, float] = dict.fromkeys(proxies, 0.0)
    ppl = []
    for candidate in tqdm(candidates, desc="candidates", disable=not progress):
        apply(candidate.levels)
        for name, proxy in proxies.items():
            start = time.perf_counter()
            scores[name].append(proxy.score(model, calib))
            seconds[name] += time.perf_counter() - start
        ppl.append(perplexity(model, held_out, batch_size=batch_size, progress=False))
    apply(None)
    return scores, ppl, {name: s / len(candidates) for name, s in seconds.items()}


def build_report(
    candidates: Sequence[Candidate],
    scores: dict[str, list[float]],
    ppl: Sequence[float],
    cost: dict[str, float],
    *,
    resamples: int,
    seed: int,
) -> dict:
    """``proxies.json``'s content from the raw scores."""
    target = np.asarray(ppl, dtype=np.float64)
    report = {"candidates": len(candidates), "proxies": {}}
    for name, values in scores.items():
        entry = rank_statistics(np.asarray(values, dtype=np.float64), target, resamples=resamples, seed=seed)
        entry["cost_vs_forward"] = cost.get(name, float("nan"))
        report["proxies"][name] = entry
    report["held_out_ppl"] = {"min": float(target.min()), "max": float(target.max()), "values": list(map(float, ppl))}
    report["scores"] = {name: list(map(float, v)) for name, v in scores.items()}
    report["names"] = [c.name for c in candidates]
    report["levels"] = [list(c.levels) for c in candidates]
    return report


# ---- output ----------------------------------------------------------------------------------------
def format_table(report: dict) -> str:
    """A fixed-width table of the per-proxy statistics."""
    header = f"{'proxy':<18} {'tau':>6} {'tau 95% CI':>16} {'rho':>6} {'top10':>6} {'regret':>7} {'cost':>6}"
    lines = [f"{report['candidates']} candidates, statistics vs held-out perplexity", header, "-" * len(header)]
    for name, s in report["proxies"].items():
        lo, hi = s["tau_ci95"]
        lines.append(
            f"{name:<18} {s['kendall_tau']:>6.3f} {f'[{lo:.2f}, {hi:.2f}]':>16} {s['spearman_rho']:>6.3f} "
            f"{s['top10_overlap']:>6.2f} {s['regret']:>7.4f} {s['cost_vs_forward']:>6.2f}"
        )
    return "\n".join(lines)
