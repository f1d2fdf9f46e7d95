"""The contract of the mixture-of-experts adapters (Qwen3-MoE, Mixtral): whole experts, or the channels of
every expert, switched in place equal the exported model, in this process and reloaded in one that never
imports strata; the router keeps exactly the kept experts' rows and renormalises over them as the family
does."""

from __future__ import annotations

import pytest
import torch
from moe_models import EXPERTS, FAMILIES, TOP_K, tiny_moe
from test_contract import assert_live_equals_materialised, assert_switching_back_is_exact, reload_cases, saved_case

from supernet.io.adapters import adapter_for
from supernet.space.params import count_params
from supernet.variants.switch import Switcher, Variant


def prune_experts(model) -> Switcher:
    """Experts {0, 3, 5} of layer 0, top-k of layer 1 (the fewest a layer keeps), 6 of layer 2; a GQA group
    of layer 1's attention with a bias."""
    switcher = Switcher(model, adapter_for(model.config))
    switcher.set(0, "mlp", Variant(torch.tensor([0, 3, 5])))
    switcher.set(1, "mlp", Variant(torch.tensor([2, 7])))
    switcher.set(2, "mlp", Variant(torch.tensor([0, 1, 2, 4, 5, 6])))
    switcher.set(
        1, "attn", Variant(torch.tensor([1]), out_bias=torch.randn(32, generator=torch.Generator().manual_seed(1)))
    )
    return switcher


def expert_channels(gen: torch.Generator, width: int) -> torch.Tensor:
    """``width`` random channels of each expert's 24, ascending per row: [EXPERTS, width]."""
    return torch.stack([torch.randperm(24, generator=gen)[:width].sort().values for _ in range(EXPERTS)])


def prune_channels(model) -> Switcher:
    """Channel units: every expert of layer 0 keeps its own 8 channels, layer 1 loses its MoE block (no
    channel left), layer 2 keeps 16 channels per expert (widths of the grid's channel quantum: transformers'
    grouped expert kernels need rows of 16 bytes)."""
    switcher = Switcher(model, adapter_for(model.config, expert_unit="channel"))
    gen = torch.Generator().manual_seed(4)
    switcher.set(0, "mlp", Variant(expert_channels(gen, 8)))
    switcher.set(1, "mlp", Variant(torch.zeros(EXPERTS, 0, dtype=torch.long)))
    switcher.set(2, "mlp", Variant(expert_channels(gen, 16)))
    return switcher


def prune_both(model) -> Switcher:
    """Both unit kinds: layer 0 keeps experts {1, 4, 6} at 16 channels each (their own channels), layer 1
    all experts at 8 channels, layer 2 top-k experts {0, 7} at full width; layer 1's attention one group."""
    switcher = Switcher(model, adapter_for(model.config, expert_unit="both"))
    gen = torch.Generator().manual_seed(6)
    switcher.set(0, "experts", Variant(torch.tensor([1, 4, 6])))
    switcher.set(0, "mlp", Variant(expert_channels(gen, 16)))
    switcher.set(1, "mlp", Variant(expert_channels(gen, 8)))
    switcher.set(2, "experts", Variant(torch.tensor([0, 7])))
    switcher.set(1, "attn", Variant(torch.tensor([0])))
    return switcher


def prune_shared(model) -> Switcher:
    """Qwen2-MoE's shared expert: layer 0 keeps 16 of its 40 channels with a compensation bias, layer 1 loses it
    but keeps the bias, layer 2 loses it whole; layer 0 also keeps experts {0, 3, 5}."""
    switcher = Switcher(model, adapter_for(model.config))
    gen = torch.Generator().manual_seed(7)
    switcher.set(0, "shared", Variant(torch.randperm(40, generator=gen)[:16].sort().values,
                                      out_bias=torch.randn(32, generator=gen)))  # fmt: skip
    switcher.set(1, "shared", Variant(torch.tensor([], dtype=torch.long), out_bias=torch.randn(32, generator=gen)))
    switcher.set(2, "shared", Variant(torch.tensor([], dtype=torch.long)))
    switcher.set(0, "mlp", Variant(torch.tensor([0, 3, 5])))
    return switcher


def test_a_shared_expert_pruned_in_place_equals_the_exported_model() -> None:
    model = tiny_moe("qwen2_moe")
    switcher = prune_shared(model)
    pruned = assert_live_equals_materialised(model, switcher)
    assert [(s["shared_expert_width"], s["shared_out_bias"]) for s in switcher.shapes()] == [(16, True), (0, True),
                                                                                             (0, False)]  # fmt: skip
    assert tuple(pruned.model.layers[0].mlp.shared_expert.down_proj.weight.shape) == (32, 16)
    assert [type(layer.mlp.shared_expert).__name__ for layer in pruned.model.layers[1:]] == ["RemovedMLP"] * 2


def test_switching_a_shared_expert_back_restores_dense_exactly() -> None:
    assert_switching_back_is_exact(tiny_moe("qwen2_moe"), prune_shared)


def test_a_shared_expert_is_a_module_of_channels() -> None:
    model = tiny_moe("qwen2_moe")
    adapter = adapter_for(model.config)
    assert adapter.grid_kinds == ("attn", "mlp", "shared") and adapter.units_total("shared") == 40
    switcher = Switcher(model, adapter)
    dense = count_params(adapter.mlp(switcher.layers[0]))
    switcher.set(0, "shared", Variant(torch.arange(10)))
    assert dense - count_params(adapter.mlp(switcher.layers[0])) == 30 * adapter.unit_params("shared") == 30 * 3 * 32


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_experts_and_their_width_in_place_equal_the_exported_model(family: str) -> None:
    model = tiny_moe(family)
    switcher = prune_both(model)
    pruned = assert_live_equals_materialised(model, switcher)
    assert [(s["num_experts"], s["expert_width"]) for s in switcher.shapes()] == [(3, 16), (8, 8), (2, 24)]
    assert tuple(pruned.model.layers[0].mlp.experts.gate_up_proj.shape) == (3, 32, 32)
    assert [layer.mlp.gate.weight.shape[0] for layer in pruned.model.layers] == [3, 8, 2]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_switching_experts_and_widths_back_restores_dense_exactly(family: str) -> None:
    assert_switching_back_is_exact(tiny_moe(family), prune_both)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_an_expert_count_and_a_width_cost_together(family: str) -> None:
    """e experts of width w hold e (3 H w + H) parameters: an ``experts`` unit is a router row, an ``mlp``
    unit one channel of one expert."""
    model = tiny_moe(family)
    adapter = adapter_for(model.config, expert_unit="both")
    assert adapter.grid_kinds[:3] == ("attn", "mlp", "experts") and adapter.min_units("experts") == TOP_K
    assert (adapter.unit_params("experts"), adapter.unit_params("mlp")) == (32, 3 * 32)
    switcher = Switcher(model, adapter)
    switcher.set(0, "experts", Variant(torch.tensor([1, 2, 5])))
    switcher.set(0, "mlp", Variant(torch.arange(16).repeat(EXPERTS, 1)))
    shared = adapter.units_total("shared") * adapter.unit_params("shared") if "shared" in adapter.grid_kinds else 0
    kept = count_params(adapter.mlp(switcher.layers[0])) - adapter.fixed_params("mlp") - shared
    assert kept == 3 * (16 * adapter.unit_params("mlp") + adapter.unit_params("experts"))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_expert_channels_in_place_equal_the_exported_model(family: str) -> None:
    model = tiny_moe(family)
    switcher = prune_channels(model)
    pruned = assert_live_equals_materialised(model, switcher)
    assert [(s["num_experts"], s["expert_width"]) for s in switcher.shapes()] == [(8, 8), (0, 0), (8, 16)]
    assert tuple(pruned.model.layers[2].mlp.experts.down_proj.shape) == (EXPERTS, 32, 16)
    assert type(pruned.model.layers[1].mlp).__name__ == "RemovedMLP"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_switching_expert_channels_back_restores_dense_exactly(family: str) -> None:
    assert_switching_back_is_exact(tiny_moe(family), prune_channels)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_a_channel_unit_holds_its_rows_in_every_expert(family: str) -> None:
    model = tiny_moe(family)
    adapter = adapter_for(model.config, expert_unit="channel")
    switcher = Switcher(model, adapter)
    dense = count_params(adapter.mlp(switcher.layers[0]))
    switcher.set(0, "mlp", Variant(torch.arange(8).repeat(EXPERTS, 1)))
    assert dense - count_params(adapter.mlp(switcher.layers[0])) == (24 - 8) * adapter.unit_params("mlp")
    assert adapter.unit_params("mlp") == 3 * 32 * EXPERTS and adapter.active_params("mlp") == (3 * 32 * TOP_K, 8 * 32)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_kept_experts_in_place_equal_the_exported_model(family: str) -> None:
    model = tiny_moe(family)
    switcher = prune_experts(model)
    pruned = assert_live_equals_materialised(model, switcher)
    assert [s["num_experts"] for s in switcher.shapes()] == [3, 2, 6]
    assert [layer.mlp.gate.weight.shape[0] for layer in pruned.model.layers] == [3, 2, 6]  # router rows
    assert all(layer.mlp.gate.top_k == TOP_K for layer in pruned.model.layers)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_switching_experts_back_restores_dense_exactly(family: str) -> None:
    assert_switching_back_is_exact(tiny_moe(family), prune_experts)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_tokens_routed_to_kept_experts_are_weighted_as_in_the_dense_model(family: str) -> None:
    """Top-k renormalised over the chosen experts does not depend on the experts not chosen: a token whose
    dense top-k experts are all kept gets exactly the dense block's output."""
    model = tiny_moe(family)
    block = model.model.layers[0].mlp
    hidden = torch.randn(64, 32, generator=torch.Generator().manual_seed(5))
    kept = torch.tensor([0, 2, 3, 5, 6])
    with torch.no_grad():
        dense = block(hidden[None])[0]
        _, _, chosen = block.gate(hidden)  # [64, k]
        switcher = Switcher(model, adapter_for(model.config))
        switcher.set(0, "mlp", Variant(kept))
        pruned = block(hidden[None])[0]
    inside = torch.isin(chosen, kept).all(dim=-1)  # [64]
    assert 0 < inside.sum() < len(inside)
    if getattr(model.config, "norm_topk_prob", True):  # Mixtral always renormalises
        torch.testing.assert_close(pruned[inside], dense[inside], atol=1e-6, rtol=1e-5)
    else:  # Qwen2-MoE: softmax over the kept experts only, every kept weight rises
        assert not torch.allclose(pruned[inside], dense[inside])
    assert not torch.allclose(pruned[~inside], dense[~inside])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_an_expert_unit_holds_its_projections_and_router_row(family: str) -> None:
    model = tiny_moe(family)
    adapter = adapter_for(model.config)
    switcher = Switcher(model, adapter)
    dense = count_params(adapter.mlp(switcher.layers[0]))
    switcher.set(0, "mlp", Variant(torch.tensor([1, 4, 6])))
    assert dense - count_params(adapter.mlp(switcher.layers[0])) == 5 * adapter.unit_params("mlp")
    assert adapter.unit_params("mlp") == 3 * 32 * 24 + 32 and adapter.min_units("mlp") == TOP_K
    kept = count_params(adapter.mlp(switcher.layers[0]))
    shared = adapter.units_total("shared") * adapter.unit_params("shared") if "shared" in adapter.grid_kinds else 0
    assert kept == 3 * adapter.unit_params("mlp") + adapter.base_params("mlp") + adapter.fixed_params("mlp") + shared


UNITS = ("prune_experts", "prune_channels", "prune_both")


@pytest.fixture(scope="module")
def reloaded_moe(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    root = tmp_path_factory.mktemp("reload-moe")
    cases = {}
    for family, prune in [(f, p) for f in sorted(FAMILIES) for p in (prune_experts, prune_channels, prune_both)]:
        model = tiny_moe(family)
        cases[family, prune.__name__] = saved_case(model, prune(model), root / f"{family}-{prune.__name__}")
    model = tiny_moe("qwen2_moe")
    cases["qwen2_moe", "prune_shared"] = saved_case(model, prune_shared(model), root / "qwen2_moe-prune_shared")
    return reload_cases(cases, root)


@pytest.mark.parametrize(
    ("family", "units"), [(f, u) for f in sorted(FAMILIES) for u in UNITS] + [("qwen2_moe", "prune_shared")]
)
def test_pruned_moe_reloads_without_strata(family: str, units: str, reloaded_moe) -> None:
    case = reloaded_moe[family, units]
    assert case["report"]["strata_modules"] == [] and case["report"]["params"] == case["params"]
    torch.testing.assert_close(case["result"]["logits"], case["live"], atol=1e-4, rtol=0)
    assert torch.equal(case["result"]["generated"], case["generated"])
