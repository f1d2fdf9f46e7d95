"""Contract every adapter passes: a candidate applied in place equals the exported model, before and
after a save/reload in a process that never imports strata."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoModelForCausalLM,
    Gemma2Config,
    Gemma3TextConfig,
    GraniteConfig,
    LlamaConfig,
    MistralConfig,
    Olmo2Config,
    Phi3Config,
    Qwen2Config,
    Qwen3Config,
)

from supernet.io.adapters import adapter_for
from supernet.io.export import materialize, save_pruned
from supernet.space.params import count_params
from supernet.variants.switch import Switcher, Variant

FAMILIES = {
    "llama": LlamaConfig,
    "mistral": MistralConfig,
    "qwen2": Qwen2Config,
    "qwen3": Qwen3Config,
    "gemma2": Gemma2Config,
    "gemma3_text": Gemma3TextConfig,
    "phi3": Phi3Config,
    "olmo2": Olmo2Config,
    "granite": GraniteConfig,
}
# what sets the family apart, at values that make a mistake visible: soft-capping small enough to bend
# the logits, a window shorter than the inputs on alternating layers, multipliers far from 1
QUIRKS = {
    "gemma2": dict(final_logit_softcapping=2.0, attn_logit_softcapping=5.0, query_pre_attn_scalar=12,
                   sliding_window=4, layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "gemma3_text": dict(final_logit_softcapping=3.0, query_pre_attn_scalar=12, sliding_window=4,
                        layer_types=["sliding_attention", "full_attention", "sliding_attention"]),
    "phi3": dict(sliding_window=5),
    "granite": dict(embedding_multiplier=6.0, residual_multiplier=0.3, attention_multiplier=0.05,
                    logits_scaling=4.0),
}  # fmt: skip
TIED = ("qwen2", "gemma2", "gemma3_text")  # tied, as the released checkpoints


def tiny_model(family: str, *, tied: bool = False):
    torch.manual_seed(0)
    config = FAMILIES[family](
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        vocab_size=97,
        tie_word_embeddings=tied,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        **QUIRKS.get(family, {}),
    )
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # norms start at 1 (Gemma's at 0): random ones make a wrongly sliced norm visible
        for name, param in model.named_parameters():
            if "norm" in name:
                param.uniform_(0.5, 1.5)
    return model


def prune_candidate(model, attn_unit: str = "group") -> Switcher:
    """A candidate touching every case: a removed attention in layer 0 (the cache's reference layer),
    a removed MLP with a bias, one GQA group (or one query head of each group) kept, biases on kept
    output projections, a width between compensated anchors."""
    g = torch.Generator().manual_seed(1)
    switcher = Switcher(model, adapter_for(model.config, attn_unit=attn_unit))
    empty = torch.tensor([], dtype=torch.long)
    kept = torch.tensor([1]) if attn_unit == "group" else torch.tensor([1, 2])  # heads 0-1 and 2-3 are the groups
    switcher.set(0, "attn", Variant(empty))
    switcher.set(0, "mlp", Variant(torch.tensor([0, 5, 9, 33]), out_bias=torch.randn(32, generator=g)))
    switcher.set(1, "attn", Variant(kept, out_bias=torch.randn(32, generator=g)))
    switcher.set(2, "attn", Variant(kept, source_units=torch.arange(switcher.adapter.units_total("attn")),
                                    mean=torch.randn(32, generator=g)))  # fmt: skip
    switcher.set(1, "mlp", Variant(empty, out_bias=torch.randn(32, generator=g)))
    switcher.set(2, "mlp", Variant(torch.arange(0, 64, 2), out_weight=torch.randn(32, 32, generator=g)))
    return switcher


def assert_live_equals_materialised(model, switcher: Switcher):
    """The candidate installed in place and its materialised model give the same logits (fp32, 1e-4);
    returns the materialised model."""
    x = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        live = model(x).logits
        pruned = materialize(model, switcher.shapes())
        torch.testing.assert_close(pruned(x).logits, live, atol=1e-4, rtol=0)
    return pruned


def assert_switching_back_is_exact(model, prune) -> None:
    """``prune(model)`` changes the logits; switching every module back to dense restores them bit for bit."""
    x = torch.randint(0, 97, (1, 9))
    with torch.no_grad():
        dense = model(x).logits
        switcher = prune(model)
        assert not torch.equal(model(x).logits, dense)
        switcher.apply(dict.fromkeys(switcher.current))
        assert torch.equal(model(x).logits, dense)


@pytest.mark.parametrize("attn_unit", ["group", "head"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_applied_candidate_equals_materialised(family: str, attn_unit: str) -> None:
    model = tiny_model(family, tied=family in TIED)
    pruned = assert_live_equals_materialised(model, prune_candidate(model, attn_unit))
    assert count_params(pruned) < count_params(tiny_model(family))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_switching_back_restores_dense_exactly(family: str) -> None:
    assert_switching_back_is_exact(tiny_model(family), prune_candidate)


def test_apply_touches_only_changed_modules() -> None:
    model = tiny_model("llama")
    switcher = Switcher(model, adapter_for(model.config))
    variant = Variant(torch.tensor([0]))
    assert switcher.apply({(0, "attn"): variant, (1, "attn"): None}) == 1
    assert switcher.apply({(0, "attn"): variant, (1, "attn"): None}) == 0


RELOAD = textwrap.dedent(
    """
    import json, sys, torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM
    for case_dir in sys.argv[1:]:
        model = AutoModelForCausalLM.from_pretrained(case_dir + "/model", trust_remote_code=True).eval()
        x = load_file(case_dir + "/in.safetensors")["x"]
        with torch.no_grad():
            logits = model(x).logits
            generated = model.generate(x[:1], max_new_tokens=6, do_sample=False)
        save_file({"logits": logits.contiguous(), "generated": generated}, case_dir + "/out.safetensors")
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("supernet", "search", "proxies"))
        print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "strata_modules": loaded}))
    """
)
CASES = [(family, attn_unit) for family in sorted(FAMILIES) for attn_unit in ("group", "head")]


class _NoTokenizer:
    def save_pretrained(self, path) -> None:
        pass


def saved_case(model, switcher: Switcher, case_dir) -> dict:
    """Save the candidate under ``case_dir/model`` with an input; what the live model gave on it."""
    x = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        live = model(x).logits
        generated = model.generate(x[:1], max_new_tokens=6, do_sample=False)
    out = save_pruned(model, switcher.shapes(), _NoTokenizer(), case_dir / "model")
    save_file({"x": x}, str(case_dir / "in.safetensors"))
    return {"dir": case_dir, "model_dir": out, "live": live, "generated": generated,
            "params": count_params(materialize(model, switcher.shapes()))}  # fmt: skip


def reload_cases(cases: dict, root) -> dict:
    """Reload every saved case in one process that never imports strata: its report and outputs."""
    proc = subprocess.run([sys.executable, "-c", RELOAD, *(str(c["dir"]) for c in cases.values())],
                          capture_output=True, text=True, cwd=root, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for case, line in zip(cases.values(), proc.stdout.strip().splitlines(), strict=True):
        case["report"] = json.loads(line)
        case["result"] = load_file(str(case["dir"] / "out.safetensors"))
    return cases


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], dict]:
    """Every family and unit pruned, saved, and reloaded in one process that never imports strata."""
    root = tmp_path_factory.mktemp("reload")
    cases = {}
    for family, attn_unit in CASES:
        model = tiny_model(family, tied=family in TIED)
        cases[family, attn_unit] = saved_case(model, prune_candidate(model, attn_unit), root / f"{family}-{attn_unit}")
    return reload_cases(cases, root)


@pytest.mark.parametrize(("family", "attn_unit"), CASES)
def test_saved_model_reloads_without_strata(family: str, attn_unit: str, reloaded) -> None:
    case = reloaded[family, attn_unit]
    out = case["model_dir"]
    assert (out / "modeling_strata.py").is_file()
    assert json.loads((out / "config.json").read_text())["auto_map"]["AutoModelForCausalLM"].startswith(
        "modeling_strata."
    )
    assert case["report"]["strata_modules"] == []
    assert case["report"]["params"] == case["params"]
    torch.testing.assert_close(case["result"]["logits"], case["live"], atol=1e-4, rtol=0)
    assert torch.equal(case["result"]["generated"], case["generated"])


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_layer_by_layer_equals_the_model_forward(family: str) -> None:
    """embed -> run_layer (with layer_context) -> logits, as calibration and the prefix cache call them,
    equals the family's own forward on the live candidate (embedding scale, rotary per layer type,
    sliding masks, soft-capped or scaled logits)."""
    model = tiny_model(family, tied=family in TIED)
    switcher = prune_candidate(model)
    adapter = switcher.adapter
    x = torch.randint(0, 97, (2, 11), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        hidden = adapter.embed(model, x)  # [2, 11, hidden]
        context = adapter.layer_context(model, hidden)
        for layer in adapter.decoder_layers(model):
            hidden = adapter.run_layer(layer, hidden, context)
        torch.testing.assert_close(adapter.logits(model, hidden), model(x).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("attn_unit", ["group", "head"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_unit_params_is_what_a_unit_holds(family: str, attn_unit: str) -> None:
    """Dense module minus the module keeping k units = (total - k) * unit_params; the module keeping
    k units = k * unit_params + base_params + fixed_params."""
    model = tiny_model(family)
    adapter = adapter_for(model.config, attn_unit=attn_unit)
    switcher = Switcher(model, adapter)
    for kind, kept in (("attn", torch.tensor([0, 1]) if attn_unit == "head" else torch.tensor([1])),
                       ("mlp", torch.tensor([3, 7, 20]))):  # fmt: skip
        switcher.set(0, kind, Variant(kept))
        module = adapter.attention(switcher.layers[0]) if kind == "attn" else adapter.mlp(switcher.layers[0])
        expected = kept.numel() * adapter.unit_params(kind) + adapter.base_params(kind) + adapter.fixed_params(kind)
        assert count_params(module) == expected, (family, kind)
