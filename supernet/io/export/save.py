"""Turn the live model (variants installed by a ``Switcher``) into a ``StrataForCausalLM`` and save it.

The saved directory holds safetensors weights, a ``config.json`` whose ``layer_shapes`` give every
layer's widths, ``modeling_strata.py`` named by ``auto_map``, and the tokenizer. It is written to a
temporary sibling directory and renamed into place, so a failed run leaves nothing half-written.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.io.export.modeling_strata import StrataConfig, StrataForCausalLM
from supernet.io.files import atomic_path
from supernet.io.reference.tokenizer import save_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


log = logging.getLogger(__name__)

_DROP = ("model_type", "architectures", "transformers_version", "auto_map", "_name_or_path")


def strata_config(dense_config, layer_shapes: list[dict]) -> StrataConfig:
    """The dense config's fields plus the per-layer widths."""
    fields = {k: v for k, v in dense_config.to_dict().items() if k not in _DROP}
    if any("num_experts" in shape for shape in layer_shapes):  # the routing loss stacks every layer's router
        fields["output_router_logits"] = False  # logits, which per-layer expert counts make ragged
    config = StrataConfig(base_model_type=dense_config.model_type, layer_shapes=layer_shapes, **fields)
    config.architectures = ["StrataForCausalLM"]
    return config


def materialize(model: PreTrainedModel, layer_shapes: list[dict], *, own: bool = False) -> StrataForCausalLM:
    """A new model holding exactly the live model's (sliced) tensors; nothing masked, all contiguous.

    ``layer_shapes``: the live model's per-layer widths (``Switcher.shapes()``, ``StrataConfig.layer_shapes``).
    ``own``: every tensor a copy of its own (a model to train apart from the live one); else tensors already
    contiguous are shared with the live model."""
    config = strata_config(model.config, layer_shapes)
    with torch.device("meta"):
        pruned = StrataForCausalLM(config)
    take = (lambda v: v.detach().clone(memory_format=torch.contiguous_format)) if own else (
        lambda v: v.detach().contiguous())  # fmt: skip
    state = {k: take(v) for k, v in model.state_dict().items()}
    missing, unexpected = pruned.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    assert not missing and not unexpected, f"state mismatch: missing {missing}, unexpected {unexpected}"
    if config.tie_word_embeddings:
        pruned.lm_head.weight = pruned.model.embed_tokens.weight
    # buffers (rotary inverse frequencies) are not in the state dict: rebuild them on the real device
    for name, buffer in model.named_buffers():
        owner, _, attr = name.rpartition(".")
        pruned.get_submodule(owner).register_buffer(attr, buffer.clone(), persistent=False)
    return pruned.eval()


def save_pruned(
    model: PreTrainedModel,
    layer_shapes: list[dict],
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
) -> Path:
    """Materialise and save atomically into ``out_dir`` (which must not exist yet)."""
    return save_strata_model(materialize(model, layer_shapes), tokenizer, out_dir)


def save_strata_model(pruned: StrataForCausalLM, tokenizer: PreTrainedTokenizerBase, out_dir: Path) -> Path:
    """Save a ``StrataForCausalLM`` (:func:`materialize`'s output, or one loaded from a saved directory) with its
    tokenizer atomically into ``out_dir`` (which must not exist yet): the layout of a run's ``model/``."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        pruned.save_pretrained(tmp)
        save_tokenizer(tokenizer, tmp)
        keep_tokenizer_ids(tmp, tokenizer)
    log.info("saved the pruned model to %s", out_dir)
    return out_dir


def keep_tokenizer_ids(directory: Path, tokenizer: PreTrainedTokenizerBase) -> None:
    """config.json names the family's model_type (no remote-code prompt); where AutoTokenizer would then
    rebuild that family's tokenizer class and tokenize differently (a Qwen2 model shipping another
    tokenizer: transformers 5 overrides the declared class for some families), it names ``strata``
    instead, so the ids stay those the model was trained on (AutoTokenizer then asks about remote code
    on a terminal before it falls back to the declared class)."""
    import json

    from transformers import AutoTokenizer

    from supernet.io.loading import FIDELITY_SAMPLE

    if not callable(tokenizer) or not (Path(directory) / "tokenizer.json").is_file():
        return  # nothing AutoTokenizer could rebuild
    expected = tokenizer(FIDELITY_SAMPLE, add_special_tokens=False)["input_ids"]
    if AutoTokenizer.from_pretrained(directory)(FIDELITY_SAMPLE, add_special_tokens=False)["input_ids"] == expected:
        return
    path = Path(directory) / "config.json"
    config = json.loads(path.read_text())
    family, config["model_type"] = config["model_type"], StrataConfig.model_type
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    log.warning("model/config.json names model_type 'strata': with %r AutoTokenizer would rebuild another "
                "tokenizer than this model's", family)  # fmt: skip
