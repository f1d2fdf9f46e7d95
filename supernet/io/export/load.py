"""Load a model strata saved (a run's ``model/`` or ``healed/``) back into strata, as ``StrataForCausalLM``.

The inverse of :func:`supernet.io.export.save.save_strata_model`: the class is imported from strata itself (the
``modeling_strata.py`` beside the weights is the same file, for processes without strata), the weights are read
from safetensors only and refused when damaged or non-finite, and the tokenizer is the one ``tokenizer.json``
defines (:func:`supernet.io.loading.faithful_tokenizer`), so the ids are those the model was pruned on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError
from supernet.io.loading import check_finite, check_weights, faithful_tokenizer, first_line

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from supernet.io.export.modeling_strata import StrataForCausalLM


def check_pruned_dir(path: Path) -> None:
    """Refuse a directory that is not a model strata saved (no config.json, or one without ``layer_shapes``)."""
    config = path / "config.json"
    if not config.is_file():
        raise UsageError(f"{path} holds no config.json: give the model/ directory a strata run wrote")
    try:
        shapes = json.loads(config.read_text()).get("layer_shapes")
    except (OSError, ValueError) as exc:
        raise UsageError(f"{config} cannot be read ({first_line(exc)}): run strata again to rewrite it") from exc
    if not shapes:
        raise UsageError(f"{path} is no model strata pruned (its config.json has no layer_shapes)")


def load_pruned(
    path: str | Path, *, dtype: str = "float32", device: str = "cpu"
) -> tuple[StrataForCausalLM, PreTrainedTokenizerBase]:
    """The saved pruned model in eval mode (no gradients) on ``device``, and its faithful tokenizer."""
    from transformers import AutoTokenizer

    from supernet.io.export.modeling_strata import StrataConfig, StrataForCausalLM

    path = Path(path)
    check_pruned_dir(path)
    check_weights(path)
    try:
        config = StrataConfig.from_pretrained(path)
        model, info = StrataForCausalLM.from_pretrained(path, config=config, dtype=getattr(torch, dtype),
                                                        use_safetensors=True, output_loading_info=True)  # fmt: skip
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise UsageError(f"could not load the pruned model in {path} ({first_line(exc)}): run strata again") from exc
    tied = config.tie_word_embeddings
    missing = [k for k in info.get("missing_keys", ()) if not (k == "lm_head.weight" and tied)]
    if missing:  # transformers would initialise them at random, as load_model refuses for a dense model
        raise UsageError(f"the weights in {path} lack {len(missing)} tensors (e.g. {missing[0]}): run strata again")
    model.to(device).eval().requires_grad_(False)
    check_finite(model, str(path))
    try:
        tokenizer = faithful_tokenizer(path, AutoTokenizer.from_pretrained(path))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"could not load the tokenizer in {path} ({first_line(exc)}): run strata again") from exc
    return model, tokenizer
