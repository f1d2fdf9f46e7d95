"""Write ``model/`` tensor by tensor: the same files :func:`supernet.io.export.save.save_pruned` writes, byte for
byte, without the pruned model in memory.

``save_pretrained`` writes the config, the generation config and ``modeling_strata.py`` from a pruned model whose
parameters are on the meta device (``state_dict={}``: no weight). The weights are then written as safetensors lays
them out (https://github.com/huggingface/safetensors, "Format"): an 8-byte little-endian header length, the JSON
header (``__metadata__`` first, then every tensor's dtype, shape and byte range, no spaces, padded with spaces to a
multiple of 8), then the tensors' bytes in header order. The order is safetensors' own (by dtype, then name), read
from the header it writes for one-element stand-ins, and the shards are those of ``huggingface_hub``'s
``split_torch_state_dict_into_shards`` at ``save_pretrained``'s default size, with its index. Each tensor is asked
of ``tensor(name)`` when its turn comes, so memory holds what that callable keeps (one layer).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.io.files import atomic_path

if TYPE_CHECKING:
    from collections.abc import Callable

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

MAX_SHARD_SIZE = "50GB"  # save_pretrained's default
METADATA = {"format": "pt"}  # what save_pretrained writes into every safetensors header


def safetensors_layout(entries: dict[str, torch.Tensor]) -> list[tuple[str, str]]:
    """(name, safetensors dtype code) in the order ``safetensors.torch.save_file`` writes ``entries``: read from
    the header it writes for one-element stand-ins of the same names and dtypes (its order depends on nothing else)."""
    from safetensors.torch import save

    blob = save({name: torch.zeros(1, dtype=t.dtype) for name, t in entries.items()}, metadata=METADATA)
    header = json.loads(blob[8 : 8 + int.from_bytes(blob[:8], "little")])
    header.pop("__metadata__", None)
    return [(name, header[name]["dtype"]) for name in sorted(header, key=lambda n: header[n]["data_offsets"][0])]


def header_bytes(entries: dict[str, torch.Tensor], layout: list[tuple[str, str]]) -> bytes:
    """The safetensors header of ``entries`` in ``layout``: u64 length, then the JSON padded to 8 bytes."""
    header: dict[str, object] = {"__metadata__": METADATA}
    offset = 0
    for name, code in layout:
        size = entries[name].numel() * entries[name].element_size()
        header[name] = {"dtype": code, "shape": list(entries[name].shape), "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def write_safetensors(path: Path, entries: dict[str, torch.Tensor], tensor: Callable[[str], torch.Tensor]) -> None:
    """Write ``entries`` (meta tensors: names, dtypes, shapes) to ``path``, each one's data from ``tensor(name)``."""
    layout = safetensors_layout(entries)
    with Path(path).open("wb") as handle:
        handle.write(header_bytes(entries, layout))
        for name, _ in layout:
            data = tensor(name).detach().to("cpu").contiguous()
            want = entries[name]
            assert data.dtype == want.dtype and data.shape == want.shape, (
                f"{name}: {data.dtype} {tuple(data.shape)}, the header says {want.dtype} {tuple(want.shape)}"
            )
            handle.write(data.reshape(-1).view(torch.uint8).numpy().data)


def saved_entries(pruned: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The tensors ``save_pretrained`` writes for ``pruned`` (a tied output head not again), as meta tensors."""
    from transformers.modeling_utils import remove_tied_weights_from_state_dict

    state = {name: t.to("meta") for name, t in pruned.state_dict().items()}
    return remove_tied_weights_from_state_dict(state, pruned)


def write_weights(directory: Path, pruned: PreTrainedModel, tensor: Callable[[str], torch.Tensor],
                  *, max_shard_size: int | str = MAX_SHARD_SIZE) -> None:  # fmt: skip
    """``pruned``'s safetensors file(s) in ``directory`` (and the index of a sharded one), as ``save_pretrained``
    writes them, each tensor's data from ``tensor(name)``."""
    from huggingface_hub import split_torch_state_dict_into_shards

    entries = saved_entries(pruned)
    split = split_torch_state_dict_into_shards(
        entries, filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size
    )
    for file, names in split.filename_to_tensors.items():
        write_safetensors(directory / file, {name: entries[name] for name in names}, tensor)
    if split.is_sharded:
        index = {"metadata": {"total_parameters": pruned.num_parameters(), **split.metadata},
                 "weight_map": split.tensor_to_filename}  # fmt: skip
        (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def save_streamed(
    pruned: PreTrainedModel,
    tensor: Callable[[str], torch.Tensor],
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    *,
    max_shard_size: int | str = MAX_SHARD_SIZE,
) -> Path:
    """Save ``pruned`` (a ``StrataForCausalLM`` on the meta device, in the live model's dtype) into ``out_dir``
    atomically, each tensor's data from ``tensor(name)``: the files ``save_pruned`` writes for the same model."""
    from supernet.io.export.save import keep_tokenizer_ids
    from supernet.io.reference.tokenizer import save_tokenizer

    out_dir = Path(out_dir)
    with atomic_path(out_dir, directory=True) as tmp:
        pruned.save_pretrained(tmp, state_dict={})  # config, generation config, modeling file; no weight
        write_weights(tmp, pruned, tensor, max_shard_size=max_shard_size)
        save_tokenizer(tokenizer, tmp)
        keep_tokenizer_ids(tmp, tokenizer)
    log.info("saved the pruned model to %s, tensor by tensor", out_dir)
    return out_dir
