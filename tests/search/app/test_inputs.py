"""Fitness held apart from fitting: the search scores candidates on train windows the supernet was not
calibrated on (``search.app.inputs.train_windows``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search.app.config import RunConfig
from search.app.inputs import fitness_tokens, train_windows
from search.driver import SearchConfig
from supernet.errors import UsageError
from supernet.io.data import DataConfig
from supernet.io.loading import ModelConfig

STAGES = {"stage_tokens": [128, 256, 512], "survivors": [2, 1, 1]}


def config(sampler: str = "evo", fitness: str = "held_apart") -> RunConfig:
    return RunConfig(model=ModelConfig(reference="tiny"), data=DataConfig(seq_len=64, calib_sequences=4),
                     search=SearchConfig(sampler=sampler, fitness=fitness, **STAGES), progress=False)  # fmt: skip


def windows(cfg: RunConfig, tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    return train_windows(cfg.data, tokenizer, seed=cfg.seed, fitness_tokens=fitness_tokens(cfg))


@pytest.fixture(scope="module")
def tokenizer(tiny_reference_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_reference_dir)


def test_fitness_windows_are_apart_from_calibration_which_a_search_does_not_change(tokenizer) -> None:
    calib, fitness = windows(config(), tokenizer)
    alone, same = windows(config(sampler="none"), tokenizer)
    assert torch.equal(calib, alone) and same is alone  # a search does not move the supernet's windows
    assert calib.shape == (4, 64) and fitness.shape == (512 // 64, 64)  # the last stage's windows
    assert not {tuple(row) for row in fitness.tolist()} & {tuple(row) for row in calib.tolist()}


def test_fitness_on_calibration_is_the_calibration_windows(tokenizer) -> None:
    calib, fitness = windows(config(fitness="calibration"), tokenizer)
    assert fitness is calib


def test_too_little_text_for_held_apart_windows_is_one_line(tokenizer, tmp_path: Path) -> None:
    text = tmp_path / "short.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 40)
    cfg = config()
    cfg.data = DataConfig(source="text", path=str(text), seq_len=64, calib_sequences=64)
    with pytest.raises(UsageError, match="search.fitness=calibration") as info:
        windows(cfg, tokenizer)
    assert "\n" not in str(info.value)
