"""A model read from its safetensors files one module at a time, into a skeleton that holds no weights.

The skeleton is the family's model built under accelerate's ``init_empty_weights(include_buffers=False)``: every
parameter on the meta device (shapes and dtypes, no memory), the buffers (rotary inverse frequencies) real and
small. :meth:`LayerStream.resident` reads one module's tensors lazily (``safetensors.safe_open``, the file open
only for these reads), casts them to the load dtype as ``from_pretrained`` does (``Tensor.to``: the same bits),
puts them on the device for the time the module is used, and puts the module back on the meta device afterwards.
The layer-wise calibration (:func:`supernet.variants.statistics.calibrate`) then holds the embeddings once, then one
decoder layer at a time, never the whole model (DESIGN.md: "memory grows with one layer, not with the model").

When to stream (:func:`should_stream`, ``supernet.stream=auto``): when the model's bytes in the load dtype exceed
:data:`STREAM_SHARE` of the memory free where the build runs (``torch.cuda.mem_get_info`` on a GPU, psutil's
available memory on the CPU); the rest of that memory is for the statistics (H of the widest projection), the
solves' float64 copies and the calibration batches.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError
from supernet.io.placement import free_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator

    from torch import nn
    from transformers import PreTrainedModel

    from supernet.io.adapters.base import DecoderAdapter

log = logging.getLogger(__name__)

STREAM_SHARE = 0.6  # supernet.stream=auto streams a model whose bytes exceed this share of the free memory
STREAM_SETTINGS = ("auto", True, False)


def check_stream(value: str | bool) -> str | bool:
    """``supernet.stream`` as ``"auto"``, True or False (the strings ``true`` / ``false`` too), else a UsageError."""
    normal = {"true": True, "false": False}.get(value.lower(), value.lower()) if isinstance(value, str) else value
    if normal not in STREAM_SETTINGS:
        raise UsageError(f"supernet.stream={value!r} is not one of auto, true, false")
    return normal


def should_stream(setting: str | bool, model_bytes: int, device: torch.device | str) -> bool:
    """Whether the supernet build streams layers: ``supernet.stream`` itself when true or false; with ``auto``,
    when ``model_bytes > STREAM_SHARE * free_bytes(device)``."""
    setting = check_stream(setting)
    if setting != "auto":
        return bool(setting)
    free = free_bytes(device)
    decided = model_bytes > STREAM_SHARE * free
    log.info("supernet.stream=auto: the model's %.2f GiB %s %.0f%% of the %.2f GiB free on %s: %s",
             model_bytes / 2**30, "exceed" if decided else "fit in", 100 * STREAM_SHARE, free / 2**30, device,
             "streaming layer by layer" if decided else "building on the loaded model")  # fmt: skip
    return decided


def weights_bytes(directory: Path | str, dtype: torch.dtype) -> int:
    """Bytes the safetensors files of ``directory`` take in ``dtype`` (headers only, no weight is read)."""
    from safetensors import safe_open

    total = 0
    for file in sorted(Path(directory).glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                total += int(torch.Size(handle.get_slice(name).get_shape()).numel())
    return total * torch.empty((), dtype=dtype).element_size()


def skeleton(config, dtype: torch.dtype) -> PreTrainedModel:
    """The family's causal LM for ``config``: parameters on the meta device in ``dtype``, buffers real, eval mode."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model.eval().requires_grad_(False)


class LayerStream:
    """The model in ``directory``, its modules read from the safetensors files when used (see the module doc).

    Attributes: ``model`` (the skeleton), ``adapter`` (the family's), ``directory``, ``dtype``, ``device``.
    """

    def __init__(self, directory: Path | str, *, dtype: str = "float32", device: str = "cpu",
                 attn_unit: str = "group", expert_unit: str = "expert") -> None:  # fmt: skip
        from accelerate.utils import set_module_tensor_to_device
        from safetensors import safe_open
        from transformers import AutoConfig

        from supernet.io.adapters import adapter_for
        from supernet.io.loading import check_model_dir, check_weights, first_line

        self.directory, self.dtype, self.device = Path(directory), getattr(torch, dtype), torch.device(device)
        check_model_dir(self.directory)
        try:
            config = AutoConfig.from_pretrained(self.directory)
        except (OSError, ValueError, KeyError) as exc:
            raise UsageError(f"{self.directory / 'config.json'} cannot be read ({first_line(exc)}): re-save the "
                             "model") from exc  # fmt: skip
        self.adapter: DecoderAdapter = adapter_for(config, attn_unit=attn_unit, expert_unit=expert_unit)
        if self.adapter.moe:
            raise UsageError(f"supernet.stream=true reads dense layers; {config.model_type} is a mixture of "
                             "experts (its experts are fused on load): use supernet.stream=false")  # fmt: skip
        check_weights(self.directory)
        self.files: dict[str, Path] = {}  # safetensors key -> its file
        for file in sorted(self.directory.glob("*.safetensors")):
            with safe_open(str(file), framework="pt") as handle:
                self.files |= dict.fromkeys(handle.keys(), file)  # noqa: SIM118 (safe_open has no __iter__)
        self.model = skeleton(config, self.dtype)
        for name, buffer in list(self.model.named_buffers()):  # the rotary frequencies, where the layers run
            set_module_tensor_to_device(self.model, name, self.device, value=buffer)
        self.names = {id(m): name for name, m in self.model.named_modules()}
        self._check_keys()

    def _check_keys(self) -> None:
        """Refuse files that lack a tensor of the model or hold decoder tensors it has no place for."""
        from supernet.io.loading import check_unexpected

        wanted = {self.file_key(name) for name in self.model.state_dict()}
        missing = sorted(wanted - set(self.files))
        if missing:
            raise UsageError(f"the weights in {self.directory} lack {len(missing)} tensors (e.g. {missing[0]}): "
                             "re-save the model")  # fmt: skip
        check_unexpected(self.directory, self.model.config, set(self.files) - wanted)

    def file_key(self, name: str) -> str:
        """The safetensors key holding the model's tensor ``name`` (a tied output head reads the embeddings)."""
        if name == "lm_head.weight" and self.adapter.geometry.tied_embeddings:
            return self.names[id(self.model.get_input_embeddings())] + ".weight"
        return name

    def read(self, name: str, dtype: torch.dtype) -> torch.Tensor:
        """The model's tensor ``name`` from the files, in ``dtype``, on the host; a NaN or Inf refused, named."""
        return self.read_many({name: dtype})[name]

    def read_many(self, wanted: dict[str, torch.dtype]) -> dict[str, torch.Tensor]:
        """The model's tensors ``wanted`` (name -> dtype) from the files, each in its dtype, on the host.

        Each file is opened for these reads and closed after: safetensors maps a file while it is open, and the
        pages read through a mapping count in the process's resident memory until it is unmapped (kept open, the
        whole file would be resident by the last layer)."""
        from safetensors import safe_open

        from supernet.io.loading import nonfinite

        out: dict[str, torch.Tensor] = {}
        for file in sorted({self.files[self.file_key(name)] for name in wanted}):
            with safe_open(str(file), framework="pt") as handle:
                for name, dtype in wanted.items():
                    key = self.file_key(name)
                    if self.files[key] == file:
                        out[name] = handle.get_tensor(key).to(dtype)
        for name, tensor in out.items():
            kind = nonfinite(tensor)
            if kind is not None:
                raise UsageError(f"model.path={self.directory} holds non-finite values in {name} ({kind}): the "
                                 "checkpoint is damaged or diverged in training; re-save or re-download the "
                                 "model")  # fmt: skip
        return out

    def load(self, module: nn.Module) -> None:
        """Read ``module``'s parameters (and persistent buffers saved in the files) onto the device, each in the
        skeleton's dtype for it (the load dtype)."""
        from accelerate.utils import set_module_tensor_to_device

        prefix = self.names[id(module)]
        meta = {name: t.dtype for name, t in [*module.named_parameters(), *module.named_buffers()]
                if t.device.type == "meta"}  # fmt: skip
        full = {name: f"{prefix}.{name}" if prefix else name for name in meta}
        values = self.read_many({full[name]: dtype for name, dtype in meta.items()})
        for name in meta:
            set_module_tensor_to_device(module, name, self.device, value=values.pop(full[name]))

    def free(self, module: nn.Module) -> None:
        """Put ``module``'s parameters back on the meta device (their memory goes)."""
        from accelerate.utils import set_module_tensor_to_device

        for name, _ in module.named_parameters():
            set_module_tensor_to_device(module, name, "meta")

    @contextlib.contextmanager
    def resident(self, module: nn.Module) -> Iterator[None]:
        """``module``'s weights on the device inside the block, on the meta device after it."""
        self.load(module)
        try:
            yield
        finally:
            self.free(module)

    def model_bytes(self) -> int:
        """Bytes of the model's parameters in the load dtype (a tied tensor once), as if loaded whole."""
        unique = {self.file_key(name): p for name, p in self.model.named_parameters(remove_duplicate=False)}
        return sum(p.numel() * p.element_size() for p in unique.values())

    def model_hash(self) -> str:
        """:func:`supernet.io.identity.model_hash` of the model as ``load_model`` would load it, read tensor by
        tensor: sha256 over every state-dict entry's name, dtype, shape and bytes in the load dtype."""
        import hashlib

        from supernet.io.identity import tensor_digest

        digest = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            digest.update(name.encode())
            value = self.read(name, tensor.dtype) if tensor.device.type == "meta" else tensor
            tensor_digest(value, digest)
        return digest.hexdigest()
