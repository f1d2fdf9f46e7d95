"""``strata`` end to end on the families with their own quirks (Gemma 2, Gemma 3, Phi-3, OLMo 2, Granite):
random 2-layer models in the layouts of real checkpoints (heads, K/V heads, head_dim, MLP width, tying,
soft-capping, multipliers; a narrow residual and the tiny reference's tokenizer keep them small), pruned to
keep 0.5 with the defaults but the supernet and the search's length, as test_real_layouts_run.py
does for the Llama-like layouts (every MLP here is wider than its FULL_DEFAULTS_MLP: FLAP's criterion and
bias, which need no Gram matrix). ``model/`` reloads in a process that never imports strata, with
``metrics.json``'s parameter count, and generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from layout_runs import CHEAP_SUPERNET, prune_layouts, reload_without_strata
from layouts import FAMILY_LAYOUTS

LAYER_CLASSES = {"gemma-2-2b": "Gemma2DecoderLayer", "gemma-3-1b": "Gemma3DecoderLayer",
                 "phi-3-mini": "Phi3DecoderLayer", "olmo-2-7b": "Olmo2DecoderLayer",
                 "granite-3.1-2b": "GraniteDecoderLayer"}  # fmt: skip


@pytest.fixture(scope="module")
def runs(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cheap = dict.fromkeys(FAMILY_LAYOUTS, CHEAP_SUPERNET)
    return prune_layouts(sorted(FAMILY_LAYOUTS), tiny_reference_dir, tmp_path_factory.mktemp("families"), cheap)


def test_every_family_is_pruned_on_budget(runs: dict[str, Path]) -> None:
    for name, run_dir in runs.items():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        budget = metrics["budget"]
        assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"], name
        assert metrics["allocation"] == "search" and set(metrics["baselines"]) == {"uniform", "flap_global"}, name
        assert metrics["pruned"]["params"] < metrics["dense"]["params"], name
        layers = json.loads((run_dir / "allocation.json").read_text())["layers"]
        assert all(0 < entry["mlp_units"] < entry["mlp_units_total"] for entry in layers), name
        shapes = json.loads((run_dir / "model" / "config.json").read_text())["layer_shapes"]
        assert [s["intermediate_size"] for s in shapes] == [entry["mlp_units"] for entry in layers], name


def test_every_pruned_family_reloads_without_strata_in_its_own_classes(runs: dict[str, Path]) -> None:
    for name, reloaded in reload_without_strata(runs).items():
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        assert reloaded == {"params": metrics["pruned"]["params"], "generated": 6,
                            "family": LAYER_CLASSES[name], "strata_modules": []}, name  # fmt: skip
