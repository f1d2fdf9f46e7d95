"""Load a dense causal LM and its tokenizer from a local directory, with one-line errors for bad input.

The config is read first, so an unsupported architecture is refused before any weight is read.

Memory: when the load dtype is the dtype stored in the safetensors files (``model.dtype=bfloat16`` for
a bf16 checkpoint), transformers maps the files and the parameters *are* the mapped bytes: nothing is
copied, pages are read from disk when a layer first runs, and the kernel may drop clean pages of
layers the streamed calibration is done with. Another dtype converts every tensor into process
memory. :func:`mapped_bytes` says which happened (logged at load).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from supernet.errors import UsageError, check_choice
from supernet.io.adapters import adapter_for
from supernet.io.dtypes import DTYPES

if TYPE_CHECKING:
    from collections.abc import Iterable

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from supernet.io.adapters.base import DecoderAdapter

log = logging.getLogger(__name__)


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (library messages run to many lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def check_positions(config, data) -> None:
    """Refuse windows longer than the model's positions (``max_position_embeddings``)."""
    limit = getattr(config, "max_position_embeddings", None)
    for name in ("seq_len", "eval_seq_len"):
        if limit is not None and getattr(data, name) > limit:
            value = getattr(data, name)
            raise UsageError(f"data.{name}={value} is beyond the model's {limit} positions: use <= {limit}")


def check_model_dir(path: Path) -> None:
    """Refuse a missing directory or a missing config."""
    if not path.is_dir():
        raise UsageError(f"model.path={path} is not a directory: give a local Hugging Face model directory")
    if not (path / "config.json").is_file():
        raise UsageError(f"{path} has no config.json: give a directory written by save_pretrained")
    try:
        pruned = "layer_shapes" in json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return  # load_model says what is wrong with it
    if pruned:
        raise UsageError(f"{path} is a model strata already pruned (its layers differ in width): prune the dense model")


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


# spaces, indentation, tabs, digits, punctuation and non-ASCII: where pre-tokenizers differ
FIDELITY_SAMPLE = (
    "def f(x):\n    return x  + 1  # ünïcödé, 12345 and 1.5e-3\n\n\tclass   A:  pass\r\n"
    'Hello, World! It\'s "quoted" — 漢字 🙂  trailing   '
)


def faithful_tokenizer(path: Path, tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """The directory's ``tokenizer.json`` as it defines itself.

    transformers 5 may rebuild a model type's tokenizer class (e.g. ``Qwen2Tokenizer``) with that class's
    own pre-tokenizer, whatever ``tokenizer.json`` says, and so produce other ids than the model was
    trained on. Where the class transformers picks tokenizes :data:`FIDELITY_SAMPLE` differently from
    ``tokenizers.Tokenizer.from_file(tokenizer.json)``, the file's tokenizer is used instead (wrapped in
    ``PreTrainedTokenizerFast`` with the same special tokens), and the log says so.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    file = path / "tokenizer.json"
    if not file.is_file():
        return tokenizer
    own = Tokenizer.from_file(str(file))
    if (
        tokenizer(FIDELITY_SAMPLE, add_special_tokens=False)["input_ids"]
        == own.encode(FIDELITY_SAMPLE, add_special_tokens=False).ids
    ):
        return tokenizer
    log.warning(
        "%s tokenizes differently from %s: using the tokenizer that file defines (saved with model/)",
        type(tokenizer).__name__, file,
    )  # fmt: skip
    specials = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str)}
    return PreTrainedTokenizerFast(tokenizer_file=str(file), model_max_length=tokenizer.model_max_length, **specials)


def load_model(
    path: str | Path,
    *,
    dtype: str = "float32",
    device: str = "cpu",
    attn_unit: str = "group",
    expert_unit: str = "expert",
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, DecoderAdapter]:
    """The model in eval mode (no gradients), its tokenizer and its family's adapter (with ``attn_unit`` and,
    for a mixture of experts, ``expert_unit``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    check_model_dir(path)
    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"{path / 'config.json'} cannot be read ({first_line(exc)}): re-save the model") from exc
    adapter = adapter_for(config, attn_unit=attn_unit, expert_unit=expert_unit)
    check_weights(path)
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), use_safetensors=True,
                                                           output_loading_info=True)  # fmt: skip
    except (OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"could not load the weights in {path} ({first_line(exc)}): re-save the model") from exc
    tied = adapter.geometry.tied_embeddings
    missing = [k for k in info.get("missing_keys", ()) if not (k == "lm_head.weight" and tied)]
    if missing:  # transformers would initialise them at random: strata would prune noise
        raise UsageError(f"the weights in {path} lack {len(missing)} tensors (e.g. {missing[0]}): re-save the model")
    check_unexpected(path, config, info.get("unexpected_keys", ()))
    model.to(device).eval().requires_grad_(False)
    check_finite(model, f"model.path={path}")
    try:
        tokenizer = faithful_tokenizer(path, AutoTokenizer.from_pretrained(path))
    except (OSError, ValueError, TypeError) as exc:
        raise UsageError(f"could not load a tokenizer from {path} ({first_line(exc)}): save the model's tokenizer "
                         "files (tokenizer.json, tokenizer_config.json) next to it") from exc  # fmt: skip
    mapped, total = mapped_bytes(model, path), sum(t.numel() * t.element_size() for t in _unique_tensors(model))
    log.info("loaded %s (%s) from %s: %.0f of %.0f MiB of weights memory-mapped", type(model).__name__,
             config.model_type, path, (mapped or 0) / 2**20, total / 2**20)  # fmt: skip
    return model, tokenizer, adapter


BLOCK_KEY = re.compile(r"(?:^|\.)layers\.(\d+)\.")


def check_unexpected(path: Path, config, unexpected: Iterable[str]) -> None:
    """Refuse decoder-layer tensors the model has no place for (transformers drops them: a config.json with
    fewer layers than its weights would load as a silently shallower model); log any other unexpected key."""
    unexpected = sorted(unexpected)
    blocks = [k for k in unexpected if BLOCK_KEY.search(k)]
    if blocks:
        layers = max(int(BLOCK_KEY.search(k).group(1)) for k in blocks) + 1
        declared = getattr(config, "num_hidden_layers", None)
        why = (
            f"config.json's num_hidden_layers={declared} but the weights hold {layers} layers"
            if declared is not None and layers > declared
            else "config.json disagrees with the weights"
        )
        raise UsageError(f"the weights in {path} hold {len(blocks)} tensors the config has no place for (e.g. "
                         f"{blocks[0]}): {why}; fix config.json or re-save the model")  # fmt: skip
    if unexpected:
        log.warning("the weights in %s hold %d tensors the model does not use, ignored (e.g. %s)",
                    path, len(unexpected), unexpected[0])  # fmt: skip


def nonfinite(tensor: torch.Tensor, *, chunk: int = 2**24) -> str | None:
    """``"NaN"`` or ``"Inf"`` when ``tensor`` holds such a value (NaN named first), else None.

    Checked ``chunk`` elements at a time, so the temporary masks stay small whatever the tensor's size."""
    if not (tensor.is_floating_point() or tensor.is_complex()):
        return None
    flat = tensor.detach().reshape(-1)
    found = None
    for start in range(0, flat.numel(), chunk):
        part = flat[start : start + chunk]
        if not bool(torch.isfinite(part).all()):
            if bool(torch.isnan(part).any()):
                return "NaN"
            found = "Inf"
    return found


def check_finite(model: torch.nn.Module, where: str) -> None:
    """Refuse a model with a NaN or Inf in any parameter, naming the first such tensor (one tensor at a time)."""
    for name, parameter in model.named_parameters():
        kind = nonfinite(parameter)
        if kind is not None:
            raise UsageError(f"{where} holds non-finite values in {name} ({kind}): the checkpoint is damaged or "
                             "diverged in training; re-save or re-download the model")  # fmt: skip


def _unique_tensors(model: torch.nn.Module) -> list[torch.Tensor]:
    """Parameters and buffers, a tied tensor once."""
    seen: dict[int, torch.Tensor] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        seen.setdefault(tensor.data_ptr(), tensor)
    return list(seen.values())


def mapped_bytes(model: torch.nn.Module, path: str | Path) -> int | None:
    """Bytes of the model's tensors that lie in a memory mapping of ``path``'s safetensors files.

    Read from the process's mappings (``psutil.Process().memory_maps``); None where psutil cannot list
    them with addresses (not Linux)."""
    import psutil

    if not sys.platform.startswith("linux"):  # elsewhere psutil's addr is one address, not a range
        return None
    try:
        maps = psutil.Process().memory_maps(grouped=False)
    except (AttributeError, NotImplementedError, psutil.Error):
        return None
    files = {str(f.resolve()) for f in Path(path).glob("*.safetensors")}
    ranges = [tuple(int(a, 16) for a in m.addr.split("-")) for m in maps if m.path in files]
    return sum(
        t.numel() * t.element_size()
        for t in _unique_tensors(model)
        if t.device.type == "cpu" and any(start <= t.data_ptr() < end for start, end in ranges)
    )


@dataclass
class ModelConfig:
    path: str | None = None  # local Hugging Face directory; None = the built-in reference model
    reference: str = "default"  # built-in reference variant when path is None: default | tiny
    dtype: str = "float32"  # weights are loaded in this dtype; statistics are always float32/64

    def __post_init__(self) -> None:
        check_choice("model.dtype", self.dtype, DTYPES)


def check_device(device: str, *, available: bool = False) -> None:
    """Refuse a device torch cannot parse; with ``available``, also CUDA where there is none (checked
    when the run starts, not when a config is composed: a cluster's config is valid on a laptop)."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise UsageError(f"device={device!r} is not a torch device: use cpu, cuda or cuda:N") from exc
    if not available:
        return
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device={device} but this machine has no CUDA GPU torch can use: use device=cpu")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise UsageError(f"device={device} but there are {torch.cuda.device_count()} CUDA devices")
