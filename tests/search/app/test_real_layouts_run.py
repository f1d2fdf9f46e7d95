"""``strata`` end to end, with the defaults a user gets, on random 2-layer models in the layouts of real
checkpoints (their heads, K/V heads, head_dim, MLP width, biases and tying; a narrow residual and the
tiny reference's tokenizer keep them small); ``model/`` reloads in a process that never imports strata.

The default supernet (OBS + refit with an intercept) costs O(width^3) per MLP on the real MLP widths,
minutes on 2 CPU cores for 11008-18944 channels: the layouts whose MLP is wider than ``FULL_DEFAULTS_MLP``
run every default but the supernet (FLAP's criterion and bias, which need no Gram matrix); the search
runs with every default but its length (``SHORT_SEARCH``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from layout_runs import CHEAP_SUPERNET, prune_layouts, reload_without_strata
from layouts import LAYOUTS

FULL_DEFAULTS_MLP = 5000  # Qwen2.5-0.5B (4864) and Qwen3-0.6B (3072) run with the default supernet


@pytest.fixture(scope="module")
def runs(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    cheap = {name: CHEAP_SUPERNET for name, layout in LAYOUTS.items() if layout[2] > FULL_DEFAULTS_MLP}
    return prune_layouts(sorted(LAYOUTS), tiny_reference_dir, tmp_path_factory.mktemp("layouts"), cheap)


def test_every_layout_is_pruned_on_budget_with_the_defaults(runs: dict[str, Path]) -> None:
    for name, run_dir in runs.items():
        budget = json.loads((run_dir / "metrics.json").read_text())["budget"]
        assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"], name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["allocation"] == "search" and set(metrics["baselines"]) == {"uniform", "flap_global"}, name
        layers = json.loads((run_dir / "allocation.json").read_text())["layers"]
        assert all(0 < entry["mlp_units"] < entry["mlp_units_total"] for entry in layers), name


def test_every_pruned_layout_reloads_without_strata(runs: dict[str, Path]) -> None:
    for name, reloaded in reload_without_strata(runs).items():
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        assert reloaded["params"] == metrics["pruned"]["params"] and reloaded["generated"] == 6, name
        assert reloaded["strata_modules"] == [], name
