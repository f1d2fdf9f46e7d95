"""Write a saved model (strata's ``model/``, or any dense checkpoint of a family with a route) as one GGUF
file that stock llama.cpp runs, every layer at its own width.

The route is llama.cpp's ``deci`` architecture, the one Llama-like graph that reads ``head_count``,
``head_count_kv`` and ``feed_forward_length`` per layer and builds each layer at its width (its
``llama``, ``qwen2`` and ``qwen3`` graphs build every layer at layer 0's). The family's adapter names its
tensors (``gguf_names``: a fused projection is split into its blocks) or says why it has no route
(``gguf_refusal``). What else is written, and why:

- ``key_length`` / ``value_length``: the head size; llama.cpp would otherwise take ``hidden / heads[0]``.
- Q and K rows (weights and biases) are permuted per head, with that layer's own head count: deci rotates
  adjacent pairs (GPT-J style), the HF families rotate the two halves of a head (``rotate_half``).
- ``rope_freqs``: the per-frequency divisors of a scaled rope (``linear``, ``llama3``), from
  transformers' own rope functions: ``default_inv_freq / scaled_inv_freq``. Ropes that scale by
  position or attention (``dynamic``, ``yarn``, ``longrope``) are refused.
- ``context_length``: ``max_position_embeddings``, or the sliding window when the family uses one
  (deci attends globally, which equals the window up to that many tokens).
- Removed sub-blocks as in :mod:`supernet.io.export.deci_layers`.

Tensors stream: the header is written from shapes alone, then each tensor is read from the safetensors (a NaN or
Inf refused, naming it), converted and appended, so memory holds one tensor at a time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from supernet.errors import UsageError
from supernet.io.adapters import ADAPTERS
from supernet.io.adapters.base import config_head_dim
from supernet.io.export.deci_layers import DeciLayer, deci_layer, uniform_shapes
from supernet.io.export.gguf_vocab import add_tokenizer
from supernet.io.files import atomic_path

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from transformers import PreTrainedConfig

log = logging.getLogger(__name__)

GGUF_DTYPES = ("f32", "f16", "q8_0")
GGUF_FILE = "model.gguf"  # beside model/ in a run directory
STRATA_KEYS = ("base_model_type", "layer_shapes")
NORMS = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


@dataclass(frozen=True)
class TensorOut:
    """One tensor of the GGUF file: its name, its torch shape, and how to produce it (float32)."""

    name: str
    shape: tuple[int, ...]
    load: Callable[[], torch.Tensor]


def family_of(config: dict) -> str:
    """The dense family of a saved config (strata writes ``base_model_type`` when it renames the type)."""
    return config.get("base_model_type") or config["model_type"]


def check_route(config: dict) -> None:
    """UsageError (one line, naming why) unless llama.cpp's deci graph computes this model exactly."""
    family = family_of(config)
    adapter = ADAPTERS.get(family)
    if adapter is None:
        raise UsageError(f"GGUF export: unsupported architecture {family!r}")
    if adapter.gguf_refusal:
        raise UsageError(f"GGUF export has no llama.cpp route for {family}: {adapter.gguf_refusal}")
    if config.get("hidden_act", "silu") != "silu":
        raise UsageError(f"GGUF export: llama.cpp's deci MLP is SwiGLU; this model's is {config['hidden_act']}")
    if config.get("partial_rotary_factor", 1.0) != 1.0:
        raise UsageError("GGUF export: llama.cpp's deci graph rotates whole heads; this model has partial rotary")


def check_exportable(config: PreTrainedConfig, tokenizer) -> None:
    """Every refusal :func:`export_gguf` would give for a model with this dense ``config`` and ``tokenizer``
    (a fast tokenizer), raised before any pruning (``export.gguf=true``)."""
    from supernet.io.export.gguf_vocab import pre_tokenizer_name

    check_route(config.to_dict())
    head_dim = config_head_dim(config)
    rope_factors(config, head_dim)
    pre_tokenizer_name(json.loads(tokenizer.backend_tokenizer.to_str()))


def hf_config(config: dict) -> PreTrainedConfig:
    """The family's transformers config built from a saved ``config.json`` (strata's keys dropped)."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    fields = {k: v for k, v in config.items() if k not in (*STRATA_KEYS, "model_type", "auto_map", "architectures")}
    return CONFIG_MAPPING[family_of(config)](**fields)


def rope_factors(config: PreTrainedConfig, head_dim: int) -> torch.Tensor | None:
    """llama.cpp's ``rope_freqs`` (divisors of the base frequencies) for a scaled rope; None when unscaled."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    params = getattr(config, "rope_parameters", None) or {}
    rope_type = params.get("rope_type", "default")
    if rope_type == "default":
        return None
    if rope_type not in ("linear", "llama3"):
        raise UsageError(f"GGUF export: rope_type {rope_type!r} scales by position or attention, which the "
                         "deci graph's fixed frequency factors cannot; linear and llama3 export")  # fmt: skip
    theta = params["rope_theta"]
    base = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    scaled, attention_factor = ROPE_INIT_FUNCTIONS[rope_type](config, "cpu")
    assert attention_factor == 1.0, f"{rope_type} rope with attention factor {attention_factor}"
    return (base / scaled.double()).float()


def context_length(config: PreTrainedConfig) -> int:
    """Positions llama.cpp may attend over exactly: the sliding window when the family uses one."""
    window = getattr(config, "sliding_window", None)
    if window and getattr(config, "use_sliding_window", True):
        return min(int(window), config.max_position_embeddings)
    return config.max_position_embeddings


def permute_rope(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Reorder each head's rows from halves (HF ``rotate_half``: i pairs with i + d/2) to adjacent pairs
    (GGML's normal rope: 2i pairs with 2i + 1); works on weights [rows, in] and biases [rows]."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


class SafetensorsReader:
    """Tensors of a saved model by name, read one at a time from its safetensors file(s)."""

    def __init__(self, model_dir: Path) -> None:
        from safetensors import safe_open

        index = model_dir / "model.safetensors.index.json"
        files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file() else [
            "model.safetensors"]  # fmt: skip
        self.model_dir = model_dir
        self.handles = {}
        for file in files:
            handle = safe_open(model_dir / file, framework="pt")
            self.handles |= {name: handle for name in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)

    def __contains__(self, name: str) -> bool:
        return name in self.handles

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.handles[name].get_slice(name).get_shape())

    def loader(self, name: str, transform: Callable[[torch.Tensor], torch.Tensor] = lambda t: t,
               rows: slice | None = None):  # fmt: skip
        """A function reading tensor ``name`` (only ``rows``: one block of a fused projection) as float32; a NaN or
        Inf in it is refused, naming the tensor (raised while the file is written: the atomic write leaves nothing)."""
        if rows is None:
            return lambda: transform(self.finite(name, self.handles[name].get_tensor(name).float()))
        return lambda: transform(self.finite(name, self.handles[name].get_slice(name)[rows].float()))

    def finite(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` (read from ``name``), or a UsageError when it holds a NaN or Inf."""
        from supernet.io.loading import nonfinite

        kind = nonfinite(tensor)
        if kind is not None:
            raise UsageError(f"GGUF export: {self.model_dir} holds non-finite values in {name} ({kind}): the "
                             "checkpoint is damaged or diverged in training; re-save the model")  # fmt: skip
        return tensor


def layer_tensors(
    reader: SafetensorsReader, adapter, index: int, layer: DeciLayer, hidden: int, head_dim: int
) -> Iterator[TensorOut]:
    """The GGUF tensors of one decoder layer (``blk.N.*``), fused projections split, stubs zero."""
    prefix, out = f"model.layers.{index}.", f"blk.{index}."
    block_rows = {"query": layer.heads * head_dim, "kv": layer.kv_heads * head_dim, "channel": layer.ff}
    rope_heads = {"attn_q": layer.heads, "attn_k": layer.kv_heads}
    live = {"attn": layer.heads > 0 and not layer.attn_stub, "mlp": layer.ff > 0 and not layer.mlp_stub}
    written = {"attn": layer.heads > 0, "mlp": layer.ff > 0}
    for kind, module, plan, norm in (
        ("attn", adapter.attention_name, adapter.attention_plan, "input_layernorm"),
        ("mlp", adapter.mlp_name, adapter.mlp_plan, "post_attention_layernorm"),
    ):
        if not written[kind]:
            continue
        yield TensorOut(out + f"{NORMS[norm]}.weight", (hidden,), reader.loader(prefix + f"{norm}.weight"))
        for projection in plan:
            names = adapter.gguf_names[projection.name]
            rows = [block_rows[b] for b in projection.blocks]
            source = f"{prefix}{module}.{projection.name}"
            for part, (name, n_rows) in enumerate(zip(names, rows, strict=True)):
                start = sum(rows[:part])
                heads = rope_heads.get(name)
                shape = (n_rows, hidden) if projection.side == "out" else (hidden, n_rows)
                if not live[kind]:
                    yield TensorOut(out + f"{name}.weight", shape, lambda s=shape: torch.zeros(s))
                    continue

                def take(t, heads=heads):
                    return permute_rope(t, heads) if heads else t

                block = slice(start, start + n_rows) if projection.side == "out" else None  # this block's rows only
                yield TensorOut(out + f"{name}.weight", shape, reader.loader(source + ".weight", take, block))
                if source + ".bias" in reader and projection.side == "out":
                    yield TensorOut(out + f"{name}.bias", (n_rows,), reader.loader(source + ".bias", take, block))
        out_proj = next(p.name for p in plan if p.side == "in")
        (out_name,) = adapter.gguf_names[out_proj]
        bias = f"{prefix}{module}.{out_proj}.bias" if live[kind] else f"{prefix}{module}.bias"
        if bias in reader:
            yield TensorOut(out + f"{out_name}.bias", (hidden,), reader.loader(bias))


def gguf_tensors(reader: SafetensorsReader, adapter, config, layers: list[DeciLayer], head_dim: int) -> list[TensorOut]:
    """Every tensor of the file, in llama.cpp's order: embeddings, rope factors, layers, final norm, output."""
    hidden = config.hidden_size
    tensors = [TensorOut("token_embd.weight", reader.shape("model.embed_tokens.weight"),
                         reader.loader("model.embed_tokens.weight"))]  # fmt: skip
    factors = rope_factors(config, head_dim)
    if factors is not None:
        tensors.append(TensorOut("rope_freqs.weight", tuple(factors.shape), lambda: factors))
    for i, layer in enumerate(layers):
        tensors.extend(layer_tensors(reader, adapter, i, layer, hidden, head_dim))
    tensors.append(TensorOut("output_norm.weight", (hidden,), reader.loader("model.norm.weight")))
    if "lm_head.weight" in reader and not config.tie_word_embeddings:
        tensors.append(TensorOut("output.weight", reader.shape("lm_head.weight"), reader.loader("lm_head.weight")))
    return tensors


def stored(shape: tuple[int, ...], dtype: str):
    """The GGML type a tensor of ``shape`` is stored as: vectors stay f32; q8_0 needs rows of 32 (else f16)."""
    import gguf

    if len(shape) < 2 or dtype == "f32":
        return gguf.GGMLQuantizationType.F32
    if dtype == "q8_0" and shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def encode(tensor: torch.Tensor, qtype) -> np.ndarray:
    """``tensor`` as the bytes (or floats) of GGML type ``qtype``."""
    import gguf

    data = tensor.detach().to(torch.float32).contiguous().numpy()
    if qtype == gguf.GGMLQuantizationType.F32:
        return data
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data, qtype)


def add_tensor_info(writer, tensor: TensorOut, qtype) -> None:
    """Declare ``tensor`` in the header as GGML type ``qtype`` (its data comes later, in order)."""
    import gguf

    if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
        dtype = np.dtype(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16)
        writer.add_tensor_info(tensor.name, tensor.shape, dtype, int(np.prod(tensor.shape)) * dtype.itemsize)
    else:
        shape = gguf.quant_shape_to_byte_shape(tensor.shape, qtype)
        writer.add_tensor_info(tensor.name, shape, np.dtype(np.uint8), int(np.prod(shape)), raw_dtype=qtype)


FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "q8_0": "MOSTLY_Q8_0"}


def export_gguf(model_dir: Path, out_path: Path, *, dtype: str = "f32", progress: bool = False) -> Path:
    """Write ``model_dir`` (a saved HF model: strata's ``model/`` or a dense checkpoint) to ``out_path``.

    Args:
        model_dir: directory with ``config.json``, safetensors weights and ``tokenizer.json``.
        out_path: the ``.gguf`` file to write (atomically: nothing is left on failure).
        dtype: ``f32`` (exact), ``f16``, or ``q8_0`` (matrices whose rows are not a multiple of 32 go f16).
        progress: a tqdm bar over the tensors.
    """
    import gguf
    from tqdm.auto import tqdm

    from supernet.errors import check_choice

    check_choice("--dtype", dtype, GGUF_DTYPES)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UsageError(f"GGUF export: {model_dir} holds no config.json (give a run directory or a model directory)")
    raw = json.loads((model_dir / "config.json").read_text())
    check_route(raw)
    config = hf_config(raw)
    adapter = ADAPTERS[family_of(raw)]
    head_dim = config_head_dim(config)
    layers = [deci_layer(i, shape) for i, shape in enumerate(raw.get("layer_shapes") or uniform_shapes(raw))]
    tensors = gguf_tensors(SafetensorsReader(model_dir), adapter, config, layers, head_dim)

    with atomic_path(Path(out_path)) as tmp:
        writer = gguf.GGUFWriter(tmp, "deci")
        writer.add_name(raw.get("_name_or_path") or model_dir.name)
        writer.add_block_count(len(layers))
        writer.add_context_length(context_length(config))
        writer.add_embedding_length(config.hidden_size)
        writer.add_feed_forward_length([layer.ff for layer in layers])
        writer.add_head_count([layer.heads for layer in layers])
        writer.add_head_count_kv([layer.kv_heads for layer in layers])
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
        writer.add_rope_dimension_count(head_dim)
        writer.add_rope_freq_base(float(config.rope_parameters["rope_theta"]))
        writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
        writer.add_vocab_size(config.vocab_size)
        writer.add_file_type(int(getattr(gguf.LlamaFileType, FILE_TYPES[dtype])))
        add_tokenizer(writer, model_dir, config.vocab_size)
        for t in tensors:
            add_tensor_info(writer, t, stored(t.shape, dtype))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t in tqdm(tensors, desc="gguf", unit="tensor", disable=not progress):
            data = t.load()
            assert tuple(data.shape) == t.shape, f"{t.name}: {tuple(data.shape)} != {t.shape}"
            writer.write_tensor_data(encode(data, stored(t.shape, dtype)))
        writer.close()
    log.info("wrote %s (%s, %d layers)", out_path, dtype, len(layers))
    return Path(out_path)
