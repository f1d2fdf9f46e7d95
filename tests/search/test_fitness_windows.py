"""Fitness held apart from fitting: the search scores candidates on train windows the supernet was not
calibrated on; ``search.resample`` redraws the early stages' windows every generation."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from search.config import RunConfig
from search.driver import SearchConfig
from supernet.config import DataConfig, ModelConfig

STAGES = {"stage_tokens": [128, 256, 512], "survivors": [2, 1, 1]}


def config(sampler: str = "evo", fitness: str = "held_apart") -> RunConfig:
    return RunConfig(model=ModelConfig(reference="tiny"), data=DataConfig(seq_len=64, calib_sequences=4),
                     search=SearchConfig(sampler=sampler, fitness=fitness, **STAGES), progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(tiny_reference_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_reference_dir)


def test_fitness_windows_are_apart_from_calibration_which_a_search_does_not_change(tokenizer) -> None:
    from search.run import train_windows

    calib, fitness = train_windows(config(), tokenizer)
    alone, same = train_windows(config(sampler="none"), tokenizer)
    assert torch.equal(calib, alone) and same is alone  # a search does not move the supernet's windows
    assert calib.shape == (4, 64) and fitness.shape == (512 // 64, 64)  # the last stage's windows
    assert not {tuple(row) for row in fitness.tolist()} & {tuple(row) for row in calib.tolist()}


def test_fitness_on_calibration_is_the_calibration_windows(tokenizer) -> None:
    from search.run import train_windows

    calib, fitness = train_windows(config(fitness="calibration"), tokenizer)
    assert fitness is calib


def test_too_little_text_for_held_apart_windows_is_one_line(tokenizer, tmp_path: Path) -> None:
    from search.run import train_windows
    from supernet.errors import UsageError

    text = tmp_path / "short.txt"
    text.write_text("def f(x):\n    return x + 1\n" * 40)
    cfg = config()
    cfg.data = DataConfig(source="text", path=str(text), seq_len=64, calib_sequences=64)
    with pytest.raises(UsageError, match="search.fitness=calibration") as info:
        train_windows(cfg, tokenizer)
    assert "\n" not in str(info.value)


def test_redraw_moves_the_early_stages_and_keeps_the_last() -> None:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from proxies.config import ProxyConfig
    from search.fitness import Evaluator, stage_windows
    from supernet.adapters import adapter_for
    from supernet.build import build_supernet, supernet_grid
    from supernet.config import SupernetConfig
    from supernet.switch import Switcher

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8)  # fmt: skip
    model, adapter = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False), adapter_for(config)
    tokens = torch.randint(0, 97, (8, 16), generator=torch.Generator().manual_seed(0))  # 8 windows of 16
    cfg = SupernetConfig(criterion="wanda_sp", compensation="bias", radius=1)
    net = build_supernet(model, adapter, tokens[:4], cfg, supernet_grid(adapter, 0.5, cfg), use_cache=False,
                         progress=False)  # fmt: skip
    stages = stage_windows(tokens, [32, 128])  # 2 windows, then all 8
    evaluator = Evaluator(model, Switcher(model, adapter), net, ProxyConfig(name="kl"), stages)
    levels = list(net.grid.target)
    last = evaluator.score(levels, 1)
    rows = {tuple(r) for r in tokens.tolist()}
    drawn = set()
    for draw in range(6):
        evaluator.redraw(draw)
        picked = torch.cat(evaluator.batches[0])
        assert picked.shape == (2, 16) and {tuple(r) for r in picked.tolist()} <= rows
        drawn.add(tuple(map(tuple, picked.tolist())))
        assert torch.equal(torch.cat(evaluator.batches[1]), tokens)  # the last stage keeps its windows
        assert evaluator.score(levels, 1) == last  # and its values: complete trials stay comparable
    assert len(drawn) > 1
    evaluator.redraw(2)
    first = evaluator.score(levels, 0)
    evaluator.redraw(3)
    evaluator.redraw(2)
    assert evaluator.score(levels, 0) == first  # a draw is a seed: the same draw, the same windows and value
