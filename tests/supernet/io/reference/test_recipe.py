"""The reference recipe, its trainer and the cache: a trained tiny model beats its init, a rebuild is reused."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

from supernet.errors import UsageError
from supernet.io.perplexity import perplexity
from supernet.io.reference import build
from supernet.io.reference.corpus import corpus_hash, corpus_texts
from supernet.io.reference.recipe import RECIPES, ZOO, Recipe, learning_rate, model_config, reference_key
from supernet.io.windows import pack_tokens

if TYPE_CHECKING:
    from pathlib import Path

TINY = RECIPES["tiny"]


def test_default_recipe_is_the_documented_model() -> None:
    default = RECIPES["default"]
    assert (default.num_layers, default.hidden_size, default.num_heads, default.num_kv_heads) == (6, 256, 8, 4)
    assert (default.head_dim, default.intermediate_size, default.seq_len) == (32, 704, 256)
    assert default.tie_word_embeddings and default.max_position_embeddings == 2048


def test_recipe_checks_its_geometry_and_family() -> None:
    with pytest.raises(AssertionError, match="num_kv_heads"):
        Recipe(name="bad", num_kv_heads=3)
    with pytest.raises(AssertionError, match="family"):
        Recipe(name="bad", family="gpt2")


def test_zoo_recipes_are_in_their_families_layouts() -> None:
    for name, recipe in ZOO.items():
        config = model_config(recipe, bos_eos_id=0)
        assert config.model_type == recipe.family, name
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
        group = (2 * recipe.num_heads // recipe.num_kv_heads + 2) * recipe.head_dim * recipe.hidden_size
        # Qwen3's property is head_dim != hidden / heads (its group is 128 channels); Gemma 2's 2:1 GQA makes a
        # group (2g + 2) d / 3 = 2d channels, a whole number as in Gemma-2-2B (512)
        if name in ("zoo-qwen3moe", "zoo-qwen2moe"):  # a mixture's MLP units are whole experts (3 H I + H each)
            width = dict(recipe.family_config)["moe_intermediate_size"]
            assert group % (3 * recipe.hidden_size * width + recipe.hidden_size), f"{name}: whole experts"
        elif name not in ("zoo-qwen3", "zoo-gemma2"):
            assert group % (3 * recipe.hidden_size), f"{name}: a GQA group must cost no whole number of channels"
        assert model.config.head_dim == recipe.head_dim
    assert ZOO["zoo-qwen3"].num_heads * ZOO["zoo-qwen3"].head_dim != ZOO["zoo-qwen3"].hidden_size


def test_learning_rate_warms_up_then_decays_to_the_minimum() -> None:
    rates = [learning_rate(TINY, step) for step in range(TINY.steps)]
    assert rates[0] == pytest.approx(TINY.learning_rate / TINY.warmup_steps)
    assert max(rates) == pytest.approx(TINY.learning_rate) == rates[TINY.warmup_steps]
    assert rates[-1] == pytest.approx(TINY.min_learning_rate)
    assert all(a >= b for a, b in zip(rates[TINY.warmup_steps :], rates[TINY.warmup_steps + 1 :], strict=False))


def test_key_depends_on_recipe_and_corpus() -> None:
    assert reference_key(TINY) == reference_key(RECIPES["tiny"])
    assert reference_key(TINY) != reference_key(RECIPES["default"])
    assert len(reference_key(TINY)) == 12


def test_directory_is_a_float32_hugging_face_model(tiny_reference_dir: Path) -> None:
    info = json.loads((tiny_reference_dir / "reference.json").read_text())
    assert info["key"] == reference_key(TINY) and info["corpus_hash"] == corpus_hash()
    assert info["recipe"]["name"] == "tiny" and info["train_seconds"] > 0 and info["eval_ppl"] > 1
    assert (tiny_reference_dir / "model.safetensors").is_file()
    model = AutoModelForCausalLM.from_pretrained(tiny_reference_dir)
    assert isinstance(model, LlamaForCausalLM) and model.dtype == torch.float32
    assert model.config.num_key_value_heads == TINY.num_kv_heads
    assert AutoTokenizer.from_pretrained(tiny_reference_dir).eos_token_id == model.config.eos_token_id


def test_trained_model_beats_its_initialisation(tiny_reference_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_reference_dir)
    tokens = pack_tokens(tokenizer, corpus_texts("eval"), seq_len=TINY.seq_len, num_sequences=16, seed=0)
    trained = AutoModelForCausalLM.from_pretrained(tiny_reference_dir).eval()
    torch.manual_seed(TINY.seed)
    untrained = LlamaForCausalLM(model_config(TINY, bos_eos_id=tokenizer.eos_token_id)).eval()
    trained_ppl = perplexity(trained, tokens, progress=False)
    assert trained_ppl < 0.5 * perplexity(untrained, tokens, progress=False)


def test_second_call_reuses_the_build(tiny_reference_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object) -> None:
        raise AssertionError("reference_model_dir retrained a model it had already built")

    monkeypatch.setattr(build, "train_reference", fail)
    mtime = (tiny_reference_dir / "reference.json").stat().st_mtime_ns
    assert build.reference_model_dir("tiny") == tiny_reference_dir
    assert (tiny_reference_dir / "reference.json").stat().st_mtime_ns == mtime


def test_committed_artifacts_win_only_with_the_right_key(
    tiny_reference_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build, "ARTIFACTS_DIR", tmp_path)
    committed = tmp_path / "tiny"
    committed.mkdir()
    (committed / "reference.json").write_text(json.dumps({"key": "stale"}))
    assert build.reference_model_dir("tiny") == tiny_reference_dir
    (committed / "reference.json").write_text(json.dumps({"key": reference_key(TINY)}))
    assert build.reference_model_dir("tiny") == committed


def test_unknown_variant_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError, match="'huge'.*default, tiny"):
        build.reference_model_dir("huge")
    assert build.main(["--variant", "huge"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown reference variant 'huge'")
