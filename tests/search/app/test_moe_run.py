"""``strata`` end to end on mixtures of experts: random 2-layer models in the layouts of Qwen3-30B-A3B,
Mixtral-8x7B and Qwen1.5-MoE-A2.7B (with its shared expert), with 8 experts and top-2 (a narrow residual
and the tiny reference's tokenizer keep them small), pruned to keep 0.5 with the default settings but the
search's length. ``allocation.json`` says how many experts each layer keeps (top-k to all), ``model/``
reloads in a process that never imports strata with ``metrics.json``'s parameter count, in the family's
own classes, and generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from layout_runs import prune_layouts, reload_without_strata
from layouts import MOE_LAYOUTS

# 8 experts, top-2, in each family's own field (Qwen2-MoE's is num_experts)
EXPERTS = {"num_local_experts": 8, "num_experts_per_tok": 2}
FIELDS = {"qwen3-30b-a3b": EXPERTS, "mixtral-8x7b": EXPERTS,
          "qwen1.5-moe-a2.7b": {"num_experts": 8, "num_experts_per_tok": 2}}  # fmt: skip
LAYER_CLASSES = {"qwen3-30b-a3b": "Qwen3MoeDecoderLayer", "mixtral-8x7b": "MixtralDecoderLayer",
                 "qwen1.5-moe-a2.7b": "Qwen2MoeDecoderLayer"}  # fmt: skip


CHANNELS = ["supernet.expert_unit=channel", "budget.kind=active_params"]


@pytest.fixture(scope="module")
def runs(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return prune_layouts(sorted(MOE_LAYOUTS), tiny_reference_dir, tmp_path_factory.mktemp("moe"), {}, FIELDS)


def test_expert_channels_under_an_active_params_budget(tiny_reference_dir: Path, tmp_path: Path) -> None:
    """Qwen3-30B-A3B's layout with channel units and budget.kind=active_params: every expert stays (or the
    whole MoE block goes), each layer at its own expert width, and the active-parameter cost meets the rule."""
    name = "qwen3-30b-a3b"
    run_dir = prune_layouts([name], tiny_reference_dir, tmp_path, {name: CHANNELS}, {name: EXPERTS})[name]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    budget = metrics["budget"]
    assert budget["kind"] == "active_params"
    assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"]
    layers = json.loads((run_dir / "allocation.json").read_text())["layers"]
    assert all(entry["experts"] == (8 if entry["mlp_units"] else 0) for entry in layers)  # all experts, or none
    assert sum(entry["mlp_units"] for entry in layers) < sum(entry["mlp_units_total"] for entry in layers)
    shapes = json.loads((run_dir / "model" / "config.json").read_text())["layer_shapes"]
    assert [s["expert_width"] for s in shapes] == [entry["mlp_units"] for entry in layers]
    (reloaded,) = reload_without_strata({name: run_dir}).values()
    assert reloaded["params"] == metrics["pruned"]["params"] and reloaded["strata_modules"] == []


def test_experts_and_their_width_in_one_search(tiny_reference_dir: Path, tmp_path: Path) -> None:
    """supernet.expert_unit=both on Mixtral-8x7B's layout: each layer keeps between top-k and all of its experts
    (or none), each at the layer's own width, the coupled cost meets the budget rule and is what the model
    loses, and model/ reloads as allocated. (The coupled active_params cost is checked on real layouts in
    tests/supernet/test_moe_joint_layouts.py.)"""
    name, kind = "mixtral-8x7b", "block_params"
    overrides = ["supernet.expert_unit=both", f"budget.kind={kind}"]
    run_dir = prune_layouts([name], tiny_reference_dir, tmp_path, {name: overrides}, {name: EXPERTS})[name]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    budget = metrics["budget"]
    assert budget["kind"] == kind and budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"]
    layers = json.loads((run_dir / "allocation.json").read_text())["layers"]
    for entry in layers:
        assert (entry["experts"] == 0) if entry["mlp_units"] == 0 else 2 <= entry["experts"] <= 8
    shapes = json.loads((run_dir / "model" / "config.json").read_text())["layer_shapes"]
    # the parameters removed are what the budget counted (bar compensation biases)
    biases = 64 * sum(s["attn_out_bias"] for s in shapes)  # the layouts' hidden size is 64; Mixtral has none
    removed = metrics["dense"]["params"] - metrics["pruned"]["params"]
    assert removed == budget["dense_cost"] - budget["cost"] - biases
    assert [(s["num_experts"], s["expert_width"]) for s in shapes] == [(e["experts"], e["mlp_units"]) for e in layers]
    for flap_layer in metrics["baselines"]["flap_global"]["allocation"]["layers"]:
        assert flap_layer["experts"] == 0 or 2 <= flap_layer["experts"] <= 8
    (reloaded,) = reload_without_strata({name: run_dir}).values()
    assert reloaded["params"] == metrics["pruned"]["params"] and reloaded["strata_modules"] == []


def test_every_mixture_is_pruned_on_budget_with_its_experts_counted(runs: dict[str, Path]) -> None:
    for name, run_dir in runs.items():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        budget = metrics["budget"]
        assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"], name
        assert metrics["allocation"] == "search" and set(metrics["baselines"]) == {"uniform", "flap_global"}, name
        layers = json.loads((run_dir / "allocation.json").read_text())["layers"]
        assert all(entry["experts_total"] == 8 and 2 <= entry["experts"] <= 8 for entry in layers), name
        assert sum(entry["experts"] for entry in layers) < 16, name
        shapes = json.loads((run_dir / "model" / "config.json").read_text())["layer_shapes"]
        assert [s["num_experts"] for s in shapes] == [entry["experts"] for entry in layers], name
        if name == "qwen1.5-moe-a2.7b":  # the shared expert is a module: its width per layer, as allocated
            assert [s["shared_expert_width"] for s in shapes] == [entry["shared_units"] for entry in layers]
            assert all(entry["shared_units_total"] == 5632 for entry in layers)
        for flap_layer in metrics["baselines"]["flap_global"]["allocation"]["layers"]:
            assert 2 <= flap_layer["experts"] <= 8, name


def test_every_pruned_mixture_reloads_without_strata(runs: dict[str, Path]) -> None:
    for name, reloaded in reload_without_strata(runs).items():
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        assert reloaded == {"params": metrics["pruned"]["params"], "generated": 6,
                            "family": LAYER_CLASSES[name], "strata_modules": []}, name  # fmt: skip
