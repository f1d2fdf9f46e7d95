"""A synthetic evaluator (fitness a known function of the levels, so search tests need no model), and a healed run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from heal_runs import HEAL_ARGS, HEAL_KEYS

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


# ---- healing: a finished, healed run of the tiny reference model (search/app/heal.py, search/heal/) -------------


@pytest.fixture(scope="session")
def heal_text(tmp_path_factory) -> Path:
    """A jsonl file of 40 documents of random words (8,000 words, ~45k tokens of the tiny tokenizer): any 24 tokens
    in a row occur once in it, so shared 24-grams mean shared text."""
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9))) for _ in range(3000)]
    path = tmp_path_factory.mktemp("heal-text") / "text.jsonl"
    lines = [json.dumps({"text": " ".join(rng.choice(words) for _ in range(200))}) for _ in range(40)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def healed_run(tiny_reference_dir, heal_text, tmp_path_factory) -> Path:
    """A run of the tiny reference model (search=none, uniform keep 0.5) on ``heal_text`` (its held-out windows cut
    from the same file) that healed its model for two steps (``heal.tokens=2048``), with its ``.hydra/config.yaml``
    as Hydra records it. Copy it before changing it."""
    from omegaconf import OmegaConf

    from search.app.config import RunConfig
    from search.app.run import run
    from search.driver import SearchConfig
    from search.heal.config import HealConfig
    from supernet.io.data import DataConfig
    from supernet.io.loading import ModelConfig

    run_dir = tmp_path_factory.mktemp("healed-run")
    data = DataConfig(source="jsonl", path=str(heal_text), seq_len=64, calib_sequences=4, eval_seq_len=64,
                      eval_sequences=4)  # fmt: skip
    cfg = RunConfig(model=ModelConfig(reference="tiny"), data=data, search=SearchConfig(sampler="none"),
                    heal=HealConfig(tokens=2048, eval_every=1, **HEAL_KEYS), progress=False)  # fmt: skip
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.structured(cfg), run_dir / ".hydra" / "config.yaml")
    run(cfg, run_dir)
    return run_dir


@pytest.fixture(scope="session")
def strata_healed(healed_run, tmp_path_factory) -> tuple[Path, str]:
    """A copy of ``healed_run`` healed again by ``strata-heal RUN_DIR *HEAL_ARGS`` (in process, uninterrupted),
    and what it printed."""
    import contextlib
    import io
    import shutil

    from search.app.heal import main

    run_dir = tmp_path_factory.mktemp("strata-healed") / "run"
    shutil.copytree(healed_run, run_dir)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main([str(run_dir), *HEAL_ARGS, "--quiet"])
    return run_dir, out.getvalue()
