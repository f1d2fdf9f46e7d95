"""A synthetic evaluator: fitness is a known function of the levels, so search tests need no model."""

from __future__ import annotations

import pytest

from supernet.space.grids import make_grid


class QuadraticEvaluator:
    """Fitness = squared distance to a fixed on-budget optimum, plus a stage-dependent offset."""

    proxy_name = "quadratic"

    def __init__(self, grid, optimum, stages: int = 3, prescreener=None) -> None:
        self.grid = grid
        self.optimum = list(optimum)
        self.stage_tokens = [64 * 2**s for s in range(stages)]
        self.prescreener = prescreener
        self.evaluations = 0
        self.forward_tokens = 0
        self.seen: list[tuple[int, ...]] = []

    @property
    def stages(self) -> int:
        return len(self.stage_tokens)

    def score(self, levels, stage: int) -> float:
        assert self.grid.on_budget(levels), f"scored an off-budget allocation {levels}"
        self.evaluations += 1
        self.seen.append(tuple(levels))
        return float(sum((a - b) ** 2 for a, b in zip(levels, self.optimum, strict=True))) + 0.01 * stage

    def prescreen(self, levels) -> float:
        return self.score(levels, 0)

    def score_many(self, batch, stage: int) -> list[float]:
        return [self.score(levels, stage) for levels in batch]

    def prescreen_many(self, batch) -> list[float]:
        return [self.prescreen(levels) for levels in batch]


@pytest.fixture
def grid():
    # 4 layers, 4 GQA groups of 5 units' cost, 64 channels; joint budget at keep 0.5
    return make_grid(
        num_layers=4, totals={"attn": 4, "mlp": 64}, unit_params={"attn": 80, "mlp": 10},
        keep=0.5, steps={"attn": 1, "mlp": 8}, radius=3, joint=True,
    )  # fmt: skip


@pytest.fixture
def optimum(grid):
    from supernet.space.repair import repair

    return repair(grid, [4, 2, 3, 6, 1, 6, 0, 7])


@pytest.fixture
def evaluator_class():
    return QuadraticEvaluator
