"""HealConfig: every bad value is a UsageError naming its key; steps and windows derive from the batch."""

from __future__ import annotations

import pytest

from search.heal.config import HealConfig
from supernet.errors import UsageError


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"tokens": -1}, "heal.tokens"),
        ({"lr": 0.0}, "heal.lr"),
        ({"lr": -1e-4}, "heal.lr"),
        ({"method": "qlora"}, "heal.method"),
        ({"teacher": "disk"}, "heal.teacher"),
        ({"temperature": 0.0}, "heal.temperature"),
        ({"lm_weight": 1.5}, "heal.lm_weight"),
        ({"warmup": 1.0}, "heal.warmup"),
        ({"clip": -1.0}, "heal.clip"),
        ({"top_k": 0}, "heal.top_k"),
        ({"save_every": 0}, "heal.save_every"),
        ({"seq_len": 1}, "heal.seq_len"),
        ({"batch_tokens": 1000, "seq_len": 64, "micro_batch": 8}, "heal.batch_tokens"),
        ({"lora_targets": []}, "heal.lora_targets"),
    ],
)
def test_bad_values_name_their_key(values: dict, key: str) -> None:
    with pytest.raises(UsageError, match=key):
        HealConfig(**values)


def test_steps_cover_the_tokens_in_whole_batches() -> None:
    cfg = HealConfig(tokens=2500, seq_len=64, batch_tokens=1024, micro_batch=8)
    assert (cfg.step_windows, cfg.steps) == (16, 3)
    assert HealConfig().steps == 0 and HealConfig(lm_weight=1.0).uses_teacher is False


def test_a_batch_must_split_over_the_processes() -> None:
    cfg = HealConfig(tokens=1024, seq_len=64, batch_tokens=1024, micro_batch=8)
    cfg.check_batch(2)
    with pytest.raises(UsageError, match="x 4 processes"):
        cfg.check_batch(4)
