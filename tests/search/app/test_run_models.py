"""The run's baselines rebuilt from its config (search/app/run_models.py): live, switched onto the dense model in
place, or as standalone copies at their shapes that compute the same logits."""

from __future__ import annotations

from pathlib import Path

import torch

from search.app.config import RunConfig
from search.app.run_models import baselines
from search.driver import SearchConfig
from supernet.io.data import DataConfig
from supernet.io.loading import ModelConfig


def test_standalone_baselines_are_smaller_copies_with_the_live_logits(tiny_reference_dir: Path) -> None:
    cfg = RunConfig(model=ModelConfig(reference="tiny"), data=DataConfig(seq_len=64, calib_sequences=4),
                    search=SearchConfig(stage_tokens=[128], survivors=[1]), progress=False)  # fmt: skip
    tokens = torch.randint(0, 200, (2, 32), generator=torch.Generator().manual_seed(0))
    live, dense_params = {}, 0
    with torch.no_grad():
        for name, model, _ in baselines(cfg):
            live[name] = model(input_ids=tokens).logits
            dense_params = dense_params or sum(p.numel() for p in model.parameters())
        for name, model, _ in baselines(cfg, standalone=True):
            if name == "dense":
                continue
            assert type(model).__name__ == "StrataForCausalLM"
            assert sum(p.numel() for p in model.parameters()) < dense_params
            torch.testing.assert_close(model(input_ids=tokens).logits, live[name], rtol=1e-5, atol=1e-5)
