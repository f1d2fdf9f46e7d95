"""Load a dense causal LM and its tokenizer from a local directory, with one-line errors for bad input.

The config is read first, so an unsupported architecture is refused before any weight is read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.adapters import adapter_for
from supernet.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from supernet.adapters import DecoderAdapter

log = logging.getLogger(__name__)


def check_model_dir(path: Path) -> None:
    """Refuse a missing directory or a missing config."""
    if not path.is_dir():
        raise UsageError(f"model.path={path} is not a directory: give a local Hugging Face model directory")
    if not (path / "config.json").is_file():
        raise UsageError(f"{path} has no config.json: give a directory written by save_pretrained")


def check_weights(path: Path) -> None:
    """Refuse weights that are missing or are not readable safetensors (no pickle is ever read)."""
    from safetensors import safe_open

    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise UsageError(f"{path} has no *.safetensors weights (strata reads no pickle checkpoints)")
    for file in weights:
        try:
            with safe_open(str(file), framework="pt") as handle:
                keys = list(handle.keys())
                if keys:
                    handle.get_slice(keys[-1])
            size = file.stat().st_size
        except Exception as exc:  # safetensors raises several types for damaged files
            raise UsageError(f"{file} is not a readable safetensors file ({exc}): re-save the model") from exc
        if size == 0:
            raise UsageError(f"{file} is empty: re-save the model")


def load_model(
    path: str | Path, *, dtype: str = "float32", device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, DecoderAdapter]:
    """The model in eval mode (no gradients), its tokenizer and its family's adapter."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    check_model_dir(path)
    config = AutoConfig.from_pretrained(path)
    adapter = adapter_for(config)
    check_weights(path)
    try:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
    except (OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"could not load the weights in {path} ({exc}): re-save the model") from exc
    model.to(device).eval().requires_grad_(False)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"could not load the tokenizer in {path} ({exc}): save one next to the model") from exc
    log.info("loaded %s (%s) from %s", type(model).__name__, config.model_type, path)
    return model, tokenizer, adapter
