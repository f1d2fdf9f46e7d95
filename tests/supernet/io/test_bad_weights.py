"""Weights that cannot be right are refused with one line naming the tensor: NaN or Inf values (at load and at
GGUF export), and a config.json with fewer layers than its weights hold."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import pytest
import torch

from supernet.errors import UsageError
from supernet.io.loading import load_model

if TYPE_CHECKING:
    from pathlib import Path

POISON = {"NaN": float("nan"), "Inf": float("inf"), "-Inf": float("-inf")}


def poisoned_copy(src: Path, dst: Path, name: str, value: float) -> Path:
    """A copy of the model directory ``src`` with one element of tensor ``name`` set to ``value``."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    (weights,) = dst.glob("*.safetensors")
    tensors = load_file(weights)
    tensors[name].view(-1)[3] = value
    save_file(tensors, weights, metadata={"format": "pt"})
    return dst


@pytest.mark.parametrize("kind", sorted(POISON))
def test_non_finite_weights_are_refused_naming_the_tensor(tiny_reference_dir: Path, tmp_path: Path, kind: str) -> None:
    name = "model.layers.1.mlp.down_proj.weight"
    model_dir = poisoned_copy(tiny_reference_dir, tmp_path / "model", name, POISON[kind])
    expected = "NaN" if kind == "NaN" else "Inf"
    with pytest.raises(UsageError, match=rf"model.path=.*model holds non-finite values in {name} \({expected}\)"):
        load_model(model_dir)


def test_nonfinite_checks_every_chunk_of_a_tensor() -> None:
    from supernet.io.loading import nonfinite

    tensor = torch.zeros(1000)
    assert nonfinite(tensor, chunk=64) is None
    tensor[999] = float("inf")
    assert nonfinite(tensor, chunk=64) == "Inf"
    tensor[10] = float("nan")
    assert nonfinite(tensor, chunk=64) == "NaN"
    assert nonfinite(torch.arange(5)) is None  # integer tensors hold no NaN


def test_config_with_fewer_layers_than_its_weights_is_refused(tiny_reference_dir: Path, tmp_path: Path) -> None:
    """transformers reports the extra layers' tensors as unexpected and drops them: a silently shallower model."""
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_reference_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    assert config["num_hidden_layers"] == 2
    config["num_hidden_layers"] = 1
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(UsageError, match=r"hold \d+ tensors the config has no place for \(e.g. model.layers.1.*"
                                         r"num_hidden_layers=1 but the weights hold 2 layers"):  # fmt: skip
        load_model(model_dir)


def test_gguf_export_refuses_non_finite_tensors_before_writing(tmp_path: Path) -> None:
    from gguf_models import style_tokenizer
    from transformers import AutoModelForCausalLM, LlamaConfig

    from supernet.io.export.gguf import export_gguf

    tokenizer = style_tokenizer("llama-bpe")
    config = LlamaConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=len(tokenizer))  # fmt: skip
    dense = tmp_path / "dense"
    AutoModelForCausalLM.from_config(config).save_pretrained(dense)
    tokenizer.save_pretrained(dense)
    name = "model.layers.1.self_attn.k_proj.weight"
    model_dir = poisoned_copy(dense, tmp_path / "poisoned", name, float("nan"))
    out = tmp_path / "out.gguf"
    with pytest.raises(UsageError, match=rf"poisoned holds non-finite values in {name} \(NaN\)"):
        export_gguf(model_dir, out)
    assert not out.exists() and not list(tmp_path.glob(".out.gguf*"))
    export_gguf(dense, out)  # the finite model exports
    assert out.is_file()
