"""Spread a dense model over the devices of one machine with accelerate's ``device_map``, whole decoder layers each.

accelerate (https://huggingface.co/docs/accelerate/usage_guides/big_modeling) decides and applies the map;
nothing here moves a tensor by hand:

1. :func:`memory_caps`: how many bytes of dense weights each device may take, ``placement.max_memory`` or
   half its free memory. The other half is for what scoring adds beside the dense tensors: the switcher
   slices each installed variant from the dense weights into a new tensor on the same device (a variant
   keeping a fraction f of a module costs f x its bytes, f < 1), so the live weights are at most twice
   the dense ones, plus the activations, the teacher cache and the stored prefixes of the proxies.
2. :func:`device_slots`: ``accelerate.utils.get_balanced_memory`` then ``accelerate.infer_auto_device_map``
   over numbered slots (slot i is ``devices[i]``), with the model's ``_no_split_modules`` (its decoder layer
   class) never split. Balanced, as ``from_pretrained(device_map="balanced")``: each device but the last
   takes at most 1/n of the model plus 1.25 layers, so none is filled to its cap while others stay empty.
3. :func:`place`: ``accelerate.dispatch_model``: each module goes to its device, and hooks move a module's
   inputs to it, so a layer called on its own (``proxies.prefix``) or the whole model takes hidden states
   from the previous device. ``force_hooks`` keeps the hooks when every slot is the same device, so the
   path a multi-GPU map takes runs the same on the CPU. accelerate replaces the parameters it moves: place a
   model before a :class:`~supernet.variants.switch.Switcher` takes references to its dense tensors.

A Ray actor places its model over the GPUs Ray gives it (``ray.num_gpus``, search/actor.py); the
in-process run over every visible GPU with ``placement.device_map=auto``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError, check_choice

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from supernet.io.adapters.base import DecoderAdapter

log = logging.getLogger(__name__)

DEVICE_MAPS = ("none", "auto")
FREE_SHARE = 0.5  # share of a device's free memory its dense weights may take (module docstring, step 1)


def parse_bytes(value: str) -> int:
    """``"30GiB"``, ``"500MB"`` or a plain number of bytes, as accelerate reads ``max_memory``."""
    from accelerate.utils import convert_file_size_to_int

    try:
        size = int(value) if value.strip().isdigit() else convert_file_size_to_int(value)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"placement.max_memory={value!r} is not a size: use e.g. 30GiB or 500MB") from exc
    if size <= 0:
        raise UsageError(f"placement.max_memory={value!r} must be positive")
    return size


@dataclass
class PlacementConfig:
    # none: the whole model on `device`; auto: spread over every visible device of `device`'s type (cuda:0..N-1,
    # as CUDA_VISIBLE_DEVICES shows them), whole decoder layers each (accelerate's balanced device_map).
    # A Ray actor spreads its model over the GPUs it owns (ray.num_gpus > 1) whatever this says.
    device_map: str = "none"
    # dense weights per device, e.g. 30GiB; null = half of each device's free memory (the rest holds the
    # installed variants, sliced beside the dense tensors, and the activations)
    max_memory: str | None = None

    def __post_init__(self) -> None:
        check_choice("placement.device_map", self.device_map, DEVICE_MAPS)
        if self.max_memory is not None:
            parse_bytes(str(self.max_memory))


def free_bytes(device: torch.device | str) -> int:
    """Free memory of a device: ``torch.cuda.mem_get_info`` for a GPU, the host's available memory else (what the
    placement caps and the streamed build's ``auto`` rule read)."""
    parsed = torch.device(device)
    if parsed.type == "cuda":
        return int(torch.cuda.mem_get_info(parsed)[0])
    import psutil

    return int(psutil.virtual_memory().available)


def memory_caps(devices: Sequence[str], max_memory: str | None = None) -> list[int]:
    """Bytes of dense weights each device may take: ``max_memory`` each, or FREE_SHARE of its free memory."""
    if max_memory is not None:
        return [parse_bytes(str(max_memory))] * len(devices)
    return [int(FREE_SHARE * free_bytes(device)) for device in devices]


def no_split_classes(model: PreTrainedModel) -> list[str]:
    """Module classes a device boundary never cuts: the model's ``_no_split_modules`` (its decoder layer)."""
    return sorted(getattr(model, "_no_split_modules", None) or [])


def device_slots(model: PreTrainedModel, caps: Sequence[int]) -> dict[str, int]:
    """accelerate's balanced device map of ``model`` over slots 0..n-1 holding ``caps[i]`` bytes each.

    Returns module name -> slot; refuses a model that does not fit (accelerate would send the rest to disk)."""
    from accelerate import infer_auto_device_map
    from accelerate.utils import compute_module_sizes, get_balanced_memory

    classes = no_split_classes(model)
    budget = dict(enumerate(int(c) for c in caps))
    balanced = get_balanced_memory(model, max_memory=dict(budget), no_split_module_classes=classes)
    slots = infer_auto_device_map(model, max_memory=balanced, no_split_module_classes=classes)
    if any(not isinstance(slot, int) for slot in slots.values()):
        size = compute_module_sizes(model)[""]
        raise UsageError(
            f"the model's {size / 2**20:,.1f} MiB do not fit on {len(caps)} device(s) at "
            f"{', '.join(f'{c / 2**20:,.1f}' for c in caps)} MiB each: add GPUs (ray.num_gpus per actor, "
            "CUDA_VISIBLE_DEVICES in-process) or raise placement.max_memory"
        )
    return dict(slots)


def place(model: PreTrainedModel, devices: Sequence[str], *, max_memory: str | None = None) -> dict[str, str]:
    """Put ``model`` on ``devices``: one device is a plain ``.to``; several get accelerate's balanced map and
    hooks (``dispatch_model``). Returns the map applied (module name -> device; ``""``: the whole model)."""
    assert devices, "place needs at least one device"
    if len(devices) == 1:
        model.to(devices[0])
        return {"": str(devices[0])}
    from accelerate import dispatch_model

    slots = device_slots(model, memory_caps(devices, max_memory))
    device_map = {name: str(devices[slot]) for name, slot in slots.items()}
    dispatch_model(model, device_map=device_map, main_device=str(devices[0]), force_hooks=True)
    spread = {device: sum(1 for d in device_map.values() if d == device) for device in dict.fromkeys(devices)}
    log.info("model spread over %s by accelerate: modules per device %s", ", ".join(devices), spread)
    return device_map


def visible_devices(device: str) -> list[str]:
    """Every visible device of ``device``'s type: cuda:0..N-1 for a GPU, else ``[device]`` alone."""
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        return [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return [device]


def load_placed(
    path: str | Path,
    devices: Sequence[str],
    *,
    dtype: str = "float32",
    max_memory: str | None = None,
    attn_unit: str = "group",
    expert_unit: str = "expert",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, DecoderAdapter]:
    """``load_model`` on the host (memory-mapped when ``dtype`` is the stored one), then :func:`place` over
    ``devices``; one device loads straight onto it."""
    from supernet.io.loading import load_model

    if len(devices) == 1:
        return load_model(path, dtype=dtype, device=devices[0], attn_unit=attn_unit, expert_unit=expert_unit)
    model, tokenizer, adapter = load_model(path, dtype=dtype, device="cpu", attn_unit=attn_unit,
                                           expert_unit=expert_unit)  # fmt: skip
    place(model, devices, max_memory=max_memory)
    return model, tokenizer, adapter
