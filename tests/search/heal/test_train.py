"""heal_model in process on the tiny reference model's pruned run: it lowers the distillation loss, keeps the
student's class and shapes (LoRA merged back), follows warmup and cosine, and the cached teacher (k = vocabulary)
trains exactly as the live one."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from heal_runs import HEAL_KEYS

from search.heal.config import HealConfig
from search.heal.data import heal_windows
from search.heal.loss import ce_sum
from search.heal.teacher import LiveTeacher
from search.heal.train import heal_model
from supernet.io.data import DataConfig
from supernet.io.export import load_pruned
from supernet.io.loading import load_model


@pytest.fixture(scope="module")
def dense(tiny_reference_dir: Path):
    return load_model(tiny_reference_dir)[0]


@pytest.fixture(scope="module")
def windows(healed_run: Path, heal_text: Path) -> torch.Tensor:
    tokenizer = load_pruned(healed_run / "model")[1]
    data = DataConfig(source="jsonl", path=str(heal_text), eval_seq_len=64, eval_sequences=4)
    return heal_windows(data, tokenizer, seq_len=64, tokens=64 * 16 * 4, seed=0)


def student(run_dir: Path):
    return load_pruned(run_dir / "model")[0]


def config(steps: int, **values) -> HealConfig:
    return HealConfig(**{**HEAL_KEYS, "tokens": steps * HEAL_KEYS["batch_tokens"], "save_every": 100, **values})


def kd(model, dense, windows: torch.Tensor) -> float:
    with torch.no_grad():
        return float(LiveTeacher(dense, 1.0).kd_sum(0, windows, model(input_ids=windows).logits))


def test_full_training_lowers_the_distillation_loss_in_place(healed_run: Path, dense, windows) -> None:
    model = student(healed_run)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    before = kd(model, dense, windows[:16])
    result = heal_model(model, dense, windows, config(4, warmup=0.25), seed=0, progress=False)
    assert kd(model, dense, windows[:16]) < 0.97 * before
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    assert (result.steps, result.tokens, len(result.curve)) == (4, 4096, 4)
    # linear warmup over 1 step from 0, then cosine to 0 over the 3 others: the lr each step used
    expected = [0.0] + [1e-3 * 0.5 * (1 + math.cos(math.pi * k / 3)) for k in range(3)]
    assert [c["lr"] for c in result.curve] == pytest.approx(expected)


def test_lora_is_merged_back_into_the_same_class_and_shapes(healed_run: Path, dense, windows) -> None:
    model = student(healed_run)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    heal_model(model, dense, windows, config(2, method="lora", lr=1e-2), seed=0, progress=False)
    after = model.state_dict()
    assert type(model).__name__ == "StrataForCausalLM" and list(after) == list(before)
    assert all(after[k].shape == v.shape for k, v in before.items())
    changed = {k for k, v in before.items() if not torch.equal(after[k], v)}
    assert changed and all(k.endswith("proj.weight") for k in changed)  # adapters on linear layers, merged


def test_the_cached_teacher_trains_as_the_live_one(healed_run: Path, dense, windows, tmp_path: Path) -> None:
    live = heal_model(student(healed_run), dense, windows, config(2), seed=0, progress=False)
    cached = heal_model(student(healed_run), dense, windows, config(2, teacher="cache", top_k=10**6), seed=0,
                        state_dir=tmp_path, progress=False)  # fmt: skip
    assert len(list((tmp_path / "teacher").glob("micro-*.safetensors"))) == 4  # 2 steps x 2 micro-batches
    assert [c["loss"] for c in cached.curve] == pytest.approx([c["loss"] for c in live.curve], rel=1e-5)


def test_the_lm_loss_needs_no_teacher(healed_run: Path, windows) -> None:
    model = student(healed_run)
    with torch.no_grad():
        first = windows[:16]
        expected = float(ce_sum(model(input_ids=first).logits, first)) / (16 * 63)
    result = heal_model(model, None, windows, config(1, lm_weight=1.0), seed=0, progress=False)
    assert result.curve[0]["loss"] == pytest.approx(expected, rel=1e-5)
