"""The pruned model of an allocation, written from the dense model's safetensors files one layer at a time.

What :func:`supernet.io.export.save_pruned` writes from the live model (variants installed by a ``Switcher``, then
materialised), byte for byte, without the dense or the pruned model in memory: the dense model is a
:class:`supernet.io.streaming.LayerStream` (a skeleton on the meta device), and each decoder layer is read from the
files, switched to its variants by a ``Switcher`` (the same slicing and compensation as in the live model), its
tensors handed to the safetensors writer (:mod:`supernet.io.export.streamed`) and freed before the next layer's
are read. Embeddings, final norm and output head are read from the files as they are written. ``model.gguf`` then
streams from the written ``model/`` (:func:`supernet.io.export.gguf.export_gguf` reads one tensor at a time).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.io.loading import BLOCK_KEY
from supernet.variants.switch import Switcher

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from supernet.io.streaming import LayerStream
    from supernet.kinds import ModuleKey
    from supernet.variants.switch import Variant

log = logging.getLogger(__name__)


def streamed_layer_shapes(stream: LayerStream, variants: dict[ModuleKey, Variant | None]) -> list[dict]:
    """``Switcher.shapes()`` of the model with ``variants`` installed, from the skeleton: the widths depend only on
    which variant each module has (its units, whether it adds a bias), never on a weight."""
    switcher = Switcher(stream.model, stream.adapter)
    switcher.current.update(variants)
    return switcher.shapes()


class PrunedTensors:
    """The pruned model's tensors by name. A decoder layer's are made when one of them is first asked for (its
    dense weights read from the files, its variants installed) and kept until another layer's are; the others are
    read from the files (the dense tensors: embeddings, final norm, output head)."""

    def __init__(self, stream: LayerStream, variants: dict[ModuleKey, Variant | None]) -> None:
        self.stream, self.variants = stream, variants
        self.dtypes = {name: t.dtype for name, t in stream.model.state_dict().items()}
        self.layer: int | None = None
        self.tensors: dict[str, torch.Tensor] = {}

    def __call__(self, name: str) -> torch.Tensor:
        match = BLOCK_KEY.search(name)
        if match is None:
            return self.stream.read(name, self.dtypes[name])
        if int(match.group(1)) != self.layer:
            self.tensors = {}  # the previous layer's go before the next layer's are read
            self.layer = int(match.group(1))
            self.tensors = self._layer(self.layer)
        return self.tensors.pop(name)

    def _layer(self, index: int) -> dict[str, torch.Tensor]:
        """Layer ``index``'s tensors at its variants, by state-dict name."""
        stream, adapter = self.stream, self.stream.adapter
        layer = adapter.decoder_layers(stream.model)[index]
        prefix = stream.names[id(layer)]
        stream.load(layer)
        try:
            switcher = Switcher(stream.model, adapter)  # made after the load: it keeps the dense tensors it finds
            kinds = [kind for kind in adapter.module_kinds if (index, kind) in self.variants]
            for kind in kinds:
                switcher.set(index, kind, self.variants[index, kind])
            state = {f"{prefix}.{k}": v.detach().contiguous() for k, v in layer.state_dict().items()}
            for kind in kinds:
                switcher.set(index, kind, None)
        finally:
            stream.free(layer)
        return state


def save_pruned_streamed(
    stream: LayerStream,
    variants: dict[ModuleKey, Variant | None],
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    *,
    max_shard_size: int | str | None = None,
) -> Path:
    """Save the model of ``stream`` with ``variants`` installed (``Supernet.variants(levels)``) into ``out_dir``
    atomically, one layer in memory at a time: the files ``save_pruned`` writes from the live model.

    ``max_shard_size``: as ``save_pretrained``'s (None: its default)."""
    from supernet.io.export.modeling_strata import StrataForCausalLM
    from supernet.io.export.save import strata_config
    from supernet.io.export.streamed import MAX_SHARD_SIZE, save_streamed

    config = strata_config(stream.model.config, streamed_layer_shapes(stream, variants))
    with torch.device("meta"):
        pruned = StrataForCausalLM(config).to(stream.dtype)
    if config.tie_word_embeddings:
        pruned.lm_head.weight = pruned.model.embed_tokens.weight
    return save_streamed(pruned, PrunedTensors(stream, variants), tokenizer, Path(out_dir),
                         max_shard_size=max_shard_size or MAX_SHARD_SIZE)  # fmt: skip
