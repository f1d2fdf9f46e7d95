"""Where attention units and MLP channels live in a decoder-only family: the adapter interface.

Every fact about a family's module paths and weight layout is in its adapter; the rest of strata
asks the adapter. The layout is a table (as transformers' ``base_model_tp_plan``): for every
projection, whether a unit owns a block of its output rows (``"out"``) or input columns (``"in"``),
and whether that block is sized by query heads, key/value heads or MLP channels.

Units (README.md, Design): an MLP unit is one intermediate channel. An attention unit is, by ``attn_unit``:

- ``group`` (default): one GQA group, i.e. its ``g = heads / kv_heads`` query heads and its one K/V head;
- ``head``: one query head. Levels remove the same number of query heads from every group (the grid's
  step is one head per group), and the K/V heads stay while any query head does: they are the module's
  base (:meth:`DecoderAdapter.base_params`), paid once when the attention is present. A layer with few
  K/V heads (Qwen2.5-0.5B: 2) then offers 7 widths per group instead of 0, 1 or 2 groups.

A fused projection (Phi-3's ``qkv_proj``: query rows, then key rows, then value rows) lists its blocks
in row order; a unit owns one block of rows in each, and a sliced fused matrix keeps the same order.
Weight vectors that units own besides the projections (OLMo 2's q/k norms over the whole projection)
are listed in ``attention_norms`` and sliced with the same rows.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch

from supernet.errors import check_choice
from supernet.kinds import EXPERTS

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedConfig, PreTrainedModel


ATTN_UNITS = ("group", "head")
Block = Literal["query", "kv", "channel"]


@dataclass(frozen=True)
class Projection:
    """One linear layer (or weight vector) of a module and how units map onto it."""

    name: str  # attribute name on the attention / MLP module
    side: Literal["out", "in"]  # unit = block of output rows ("out") or input columns ("in")
    # block size: query heads, K/V heads, or 1 channel; a fused projection lists its blocks in row order
    block: Block | tuple[Block, ...]

    @property
    def blocks(self) -> tuple[Block, ...]:
        """The blocks of rows in order (one for an unfused projection)."""
        return self.block if isinstance(self.block, tuple) else (self.block,)


@dataclass(frozen=True)
class Geometry:
    """Sizes of a dense model, read once from its config."""

    num_layers: int
    hidden: int
    num_heads: int  # query heads per layer
    num_kv_heads: int  # K/V heads per layer = attention units (GQA groups) per layer
    head_dim: int
    intermediate: int  # MLP channels per layer
    vocab: int
    tied_embeddings: bool

    @property
    def group_size(self) -> int:
        """Query heads per GQA group."""
        return self.num_heads // self.num_kv_heads


def config_head_dim(config: PreTrainedConfig) -> int:
    """The attention head dimension a config declares: ``head_dim``, else hidden_size / num_attention_heads (a
    family whose heads are not hidden / heads wide says so: Qwen3, Gemma). The one rule the adapters and the GGUF
    export read (``modeling_strata.py``, shipped alone with every model, keeps a copy)."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


class DecoderAdapter:
    """Facts about one decoder-only family with grouped-query attention and a gated MLP.

    Subclasses set the class attributes; a close relative subclasses and overrides only what differs
    (as transformers' modular files do).
    """

    model_types: ClassVar[tuple[str, ...]] = ()
    attention_name: ClassVar[str] = "self_attn"
    mlp_name: ClassVar[str] = "mlp"
    attention_plan: ClassVar[tuple[Projection, ...]] = (
        Projection("q_proj", "out", "query"),
        Projection("k_proj", "out", "kv"),
        Projection("v_proj", "out", "kv"),
        Projection("o_proj", "in", "query"),
    )
    mlp_plan: ClassVar[tuple[Projection, ...]] = (
        Projection("gate_proj", "out", "channel"),
        Projection("up_proj", "out", "channel"),
        Projection("down_proj", "in", "channel"),
    )
    # weight vectors of the attention (modules with a ``weight`` [rows]) whose rows units own (OLMo 2)
    attention_norms: ClassVar[tuple[Projection, ...]] = ()
    # llama.cpp: each projection's GGUF tensor names (``blk.N.<name>``), one per block of rows in order
    gguf_names: ClassVar[dict[str, tuple[str, ...]]] = {
        "q_proj": ("attn_q",), "k_proj": ("attn_k",), "v_proj": ("attn_v",), "o_proj": ("attn_output",),
        "gate_proj": ("ffn_gate",), "up_proj": ("ffn_up",), "down_proj": ("ffn_down",),
    }  # fmt: skip
    # why llama.cpp's ``deci`` graph cannot compute this family exactly; None: it can (supernet/io/export/gguf.py)
    gguf_refusal: ClassVar[str | None] = None
    # mixture of experts: the MLP kind's units are whole routed experts (supernet/io/adapters/moe.py)
    moe: ClassVar[bool] = False

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group") -> None:
        check_choice("supernet.attn_unit", attn_unit, ATTN_UNITS)
        self.attn_unit = attn_unit
        self.sliding_window: int | None = getattr(config, "sliding_window", None)
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = config_head_dim(config)
        self.geometry = Geometry(
            num_layers=config.num_hidden_layers,
            hidden=config.hidden_size,
            num_heads=heads,
            num_kv_heads=kv_heads,
            head_dim=head_dim,
            intermediate=config.intermediate_size,
            vocab=config.vocab_size,
            tied_embeddings=bool(getattr(config, "tie_word_embeddings", False)),
        )
        assert heads % kv_heads == 0, f"{heads} query heads do not split into {kv_heads} GQA groups"

    # ---- where modules live -------------------------------------------------------------------
    def decoder_layers(self, model: PreTrainedModel) -> nn.ModuleList:
        return model.model.layers

    def attention(self, layer: nn.Module) -> nn.Module:
        return getattr(layer, self.attention_name)

    def mlp(self, layer: nn.Module) -> nn.Module:
        return getattr(layer, self.mlp_name)

    def set_attention(self, layer: nn.Module, module: nn.Module) -> None:
        setattr(layer, self.attention_name, module)

    def set_mlp(self, layer: nn.Module, module: nn.Module) -> None:
        setattr(layer, self.mlp_name, module)

    def plan(self, kind: str) -> tuple[Projection, ...]:
        """The projections of a module of ``kind`` and how its units map onto them."""
        return self.attention_plan if kind == "attn" else self.mlp_plan

    def module(self, layer: nn.Module, kind: str) -> nn.Module:
        """The live module of ``kind`` in ``layer``."""
        return self.attention(layer) if kind == "attn" else self.mlp(layer)

    def set_module(self, layer: nn.Module, kind: str, module: nn.Module) -> None:
        """Install ``module`` as ``layer``'s module of ``kind``."""
        if kind == "attn":
            self.set_attention(layer, module)
        else:
            self.set_mlp(layer, module)

    @property
    def module_kinds(self) -> tuple[str, ...]:
        """The grid's kinds that are modules of their own (a mixture's expert count is not: it is its MLP's)."""
        return tuple(k for k in self.grid_kinds if k != EXPERTS)

    def output_projection(self, kind: str) -> str:
        """Name of the projection whose input columns a unit owns (o_proj / down_proj)."""
        (name,) = [p.name for p in self.plan(kind) if p.side == "in"]
        return name

    def output_linear(self, layer: nn.Module, kind: str) -> nn.Module:
        """The live output projection (o_proj / down_proj) of a module of ``layer``."""
        return getattr(self.module(layer, kind), self.output_projection(kind))

    # ---- calling decoder layers one at a time (layer-wise calibration) ---------------------------
    def embed(self, model: PreTrainedModel, input_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings. input_ids: [batch, tokens] -> [batch, tokens, hidden]"""
        return model.model.embed_tokens(input_ids)

    def logits(self, model: PreTrainedModel, hidden_states: torch.Tensor) -> torch.Tensor:
        """head(norm(h_L)) as the family's CausalLM computes it: [batch, tokens, hidden] -> [.., vocab]"""
        return model.lm_head(model.model.norm(hidden_states))

    def layer_context(self, model: PreTrainedModel, hidden_states: torch.Tensor) -> dict:
        """What a decoder layer needs besides its input, as the family's ``Model.forward`` builds it.

        Positions 0..T-1, the rotary (cos, sin), and the causal masks by attention type (sliding
        windows for families that have them). hidden_states: [batch, tokens, hidden].
        """
        from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

        base = model.model
        position_ids = torch.arange(hidden_states.shape[1], device=hidden_states.device).unsqueeze(0)  # [1, T]
        kwargs = dict(
            config=base.config, inputs_embeds=hidden_states, attention_mask=None, cache=None, position_ids=position_ids
        )
        masks = {"full_attention": create_causal_mask(**kwargs)}
        if self.sliding_window:
            masks["sliding_attention"] = create_sliding_window_causal_mask(**kwargs)
        return {
            "position_ids": position_ids,
            "position_embeddings": self.rotary(model, hidden_states, position_ids),
            "masks": masks,
        }

    def rotary(self, model: PreTrainedModel, hidden_states: torch.Tensor, position_ids: torch.Tensor):
        """The rotary (cos, sin) of positions ``position_ids`` [1, T], as the family's model computes them."""
        return model.model.rotary_emb(hidden_states, position_ids=position_ids)

    def layer_position_embeddings(self, layer: nn.Module, context: dict):
        """The rotary (cos, sin) a decoder layer gets (one for all layers in most families)."""
        return context["position_embeddings"]

    def attention_type(self, layer: nn.Module) -> str:
        """Which mask a layer uses: ``full_attention`` or ``sliding_attention`` (per-layer in Qwen2/3)."""
        kind = getattr(self.attention(layer), "layer_type", None) or getattr(layer, "attention_type", None)
        return kind or "full_attention"

    def run_layer(self, layer: nn.Module, hidden_states: torch.Tensor, context: dict) -> torch.Tensor:
        """One decoder layer on its own. hidden_states: [batch, tokens, hidden] -> same shape."""
        out = layer(
            hidden_states,
            attention_mask=context["masks"].get(self.attention_type(layer), context["masks"]["full_attention"]),
            position_ids=context["position_ids"],
            position_embeddings=self.layer_position_embeddings(layer, context),
        )
        return out[0] if isinstance(out, tuple) else out

    # ---- units -> rows / columns -----------------------------------------------------------------
    def block_rows(self, block: str) -> int:
        """Rows of one block type in the dense module: heads * head_dim, K/V heads * head_dim, channels."""
        geo = self.geometry
        return {"query": geo.num_heads * geo.head_dim, "kv": geo.num_kv_heads * geo.head_dim,
                "channel": geo.intermediate}[block]  # fmt: skip

    def block_index(self, units: torch.Tensor, block: str | tuple[str, ...], *, kind: str) -> torch.Tensor:
        """Row or column indices a set of units owns in a projection of the given block type.

        GQA groups: group u owns query heads [u*g, (u+1)*g) and K/V head u. Query heads (``attn_unit=head``):
        unit u is query head u, and the K/V heads are all kept while any query head is. Each head is
        ``head_dim`` consecutive rows. For the MLP, unit u is channel u. A fused projection's blocks
        (a tuple) follow each other: the indices of each block, offset by the dense rows of those before.
        """
        if isinstance(block, tuple):
            offsets = [0]
            for b in block[:-1]:
                offsets.append(offsets[-1] + self.block_rows(b))
            return torch.cat([self.block_index(units, b, kind=kind) + o for b, o in zip(block, offsets, strict=True)])
        geo = self.geometry
        if block == "channel":  # an MLP's (or a shared expert's) channel u is row / column u
            return units
        if self.attn_unit == "head":
            heads = units if block == "query" else torch.arange(geo.num_kv_heads if units.numel() else 0)
        else:
            per_unit = geo.group_size if block == "query" else 1
            heads = (units[:, None] * per_unit + torch.arange(per_unit)).reshape(-1)  # [units * per_unit]
        return (heads[:, None] * geo.head_dim + torch.arange(geo.head_dim)).reshape(-1)

    def unit_sums(self, proj: Projection, per_row: torch.Tensor, kind: str) -> torch.Tensor:
        """Sum a per-row (per-column for ``side="in"``) quantity of ``proj`` over each unit's rows, in
        the blocks units own. per_row: [rows] -> [units]"""
        total = torch.zeros(self.units_total(kind), dtype=per_row.dtype, device=per_row.device)
        start = 0
        for block in proj.blocks:
            rows = self.block_rows(block)
            if self._owned(block, kind):  # a unit's rows are contiguous within a block
                total += per_row[start : start + rows].reshape(len(total), -1).sum(dim=1)  # [units]
            start += rows
        return total

    def output_columns(self, units: torch.Tensor, kind: str) -> torch.Tensor:
        """Input columns of the output projection (o_proj / down_proj) that ``units`` own."""
        (block,) = [p.block for p in self.plan(kind) if p.side == "in"]
        return self.block_index(units, block, kind=kind)

    @property
    def grid_kinds(self) -> tuple[str, ...]:
        """The modules of a layer the level grid holds, in grid order (a mixture may add its expert count)."""
        return ("attn", "mlp")

    def block_unit_params(self) -> int:
        """Parameters of one layer's units (attention and MLP, with their bases), all kept."""
        return sum(self.units_total(k) * self.unit_params(k) + self.base_params(k) for k in ("attn", "mlp"))

    def units_total(self, kind: str) -> int:
        if kind == "mlp":
            return self.geometry.intermediate
        return self.geometry.num_heads if self.attn_unit == "head" else self.geometry.num_kv_heads

    def min_units(self, kind: str) -> int:
        """The fewest units a module may keep; 0 lets it be removed (a MoE layer keeps its top-k experts)."""
        return 0

    def unit_step(self, kind: str) -> int:
        """The fewest units a level may add: one query head from every group with ``attn_unit=head``."""
        return self.geometry.num_kv_heads if kind == "attn" and self.attn_unit == "head" else 1

    def _owned(self, block: str, kind: str) -> bool:
        """Whether units own a block's rows (K/V rows are the base with head units)."""
        return not (kind == "attn" and self.attn_unit == "head" and block == "kv")

    def owns(self, proj: Projection, kind: str) -> bool:
        """Whether units own rows/columns of ``proj`` (K/V projections are the base with head units)."""
        return any(self._owned(block, kind) for block in proj.blocks)

    def attention_shape(self, units: int) -> tuple[int, int]:
        """(query heads, K/V heads) of an attention that keeps ``units`` units."""
        if self.attn_unit == "head":
            return units, self.geometry.num_kv_heads if units else 0
        return units * self.geometry.group_size, units

    def unit_params(self, kind: str) -> int:
        """Parameters one unit holds (weights, the biases of row-sliced projections, its norm rows).

        GQA group: (2g + 2) * head_dim * hidden weights (REFERENCES: FLAP's cost, corrected for GQA);
        query head: 2 * head_dim * hidden.
        """
        return sum(
            self._rows_params(proj, block, kind) for proj, block in self._blocks(kind) if self._owned(block, kind)
        )

    def base_params(self, kind: str) -> int:
        """Parameters a module holds while it keeps any unit, beyond its units' (K/V with head units)."""
        return sum(self.geometry.num_kv_heads * self._rows_params(proj, block, kind)
                   for proj, block in self._blocks(kind) if not self._owned(block, kind))  # fmt: skip

    def _blocks(self, kind: str) -> list[tuple[Projection, str]]:
        """Every (projection or norm, block) of a module's plan."""
        plan = (*self.attention_plan, *self.attention_norms) if kind == "attn" else self.plan(kind)
        return [(proj, block) for proj in plan for block in proj.blocks]

    def _rows_params(self, proj: Projection, block: str, kind: str) -> int:
        """Weights (and bias) of one block of ``proj``: a group's or a head's rows/columns, or a channel's;
        a norm's rows are one weight each."""
        geo = self.geometry
        per_group = geo.group_size if self.attn_unit == "group" else 1
        rows = {"query": per_group * geo.head_dim, "kv": geo.head_dim, "channel": 1}[block]
        if proj in self.attention_norms:
            return rows
        bias = rows if proj.side == "out" and self.has_bias(kind, proj.name) else 0
        return rows * geo.hidden + bias

    def has_bias(self, kind: str, name: str) -> bool:
        """Whether the dense family carries a bias on this projection (e.g. Qwen2's q/k/v)."""
        return False

    def fixed_params(self, kind: str) -> int:
        """Parameters of a module that no unit owns (norms inside attention, dense output biases)."""
        return 0

    # ---- the live module's own sizes ---------------------------------------------------------------
    def resize_attention(self, module: nn.Module, heads: int, kv_heads: int) -> None:
        """Set the sizes an attention's forward reads from itself to the live (sliced) widths.

        transformers 5 reshapes with -1 heads; what it still reads is ``num_key_value_groups`` (query
        heads per K/V head, for ``repeat_kv`` in eager attention), which head units change."""
        if hasattr(module, "num_key_value_groups") and kv_heads:
            module.num_key_value_groups = heads // kv_heads

    @staticmethod
    def sized_config(config: PreTrainedConfig, **sizes: int) -> PreTrainedConfig:
        """A shallow copy of a module's config with other sizes (for forwards that read them there)."""
        sized = copy.copy(config)
        for name, value in sizes.items():
            setattr(sized, name, value)
        return sized
