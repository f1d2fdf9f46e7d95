"""load_pruned: a directory strata saved comes back as StrataForCausalLM with its tokenizer; anything else is a
one-line UsageError."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from supernet.errors import UsageError
from supernet.io.export import load_pruned, save_strata_model
from supernet.io.export.save import materialize
from supernet.io.loading import load_model
from supernet.variants.switch import Switcher


def test_a_saved_model_loads_back_as_it_was(tiny_reference_dir: Path, tmp_path: Path) -> None:
    dense, tokenizer, adapter = load_model(tiny_reference_dir)
    pruned = materialize(dense, Switcher(dense, adapter).shapes())
    save_strata_model(pruned, tokenizer, tmp_path / "model")
    loaded, reloaded_tokenizer = load_pruned(tmp_path / "model")
    assert type(loaded) is type(pruned) and not any(p.requires_grad for p in loaded.parameters())
    ids = torch.arange(1, 17)[None]
    torch.testing.assert_close(loaded(ids).logits, pruned(ids).logits, rtol=0, atol=0)
    text = "def f(x):\n    return x + 1\n"
    assert reloaded_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_a_dense_or_missing_directory_is_refused(tiny_reference_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no model strata pruned"):
        load_pruned(tiny_reference_dir)
    with pytest.raises(UsageError, match="holds no config.json"):
        load_pruned(tmp_path)


def test_a_saved_model_missing_a_tensor_is_refused(tiny_reference_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    dense, tokenizer, adapter = load_model(tiny_reference_dir)
    save_strata_model(materialize(dense, Switcher(dense, adapter).shapes()), tokenizer, tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    tensors = load_file(str(weights))
    dropped = next(k for k in tensors if "mlp.down_proj" in k)
    save_file({k: v for k, v in tensors.items() if k != dropped}, str(weights), metadata={"format": "pt"})
    with pytest.raises(UsageError, match="lack 1 tensors") as info:
        load_pruned(tmp_path / "model")
    assert "\n" not in str(info.value)
