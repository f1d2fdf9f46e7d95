"""Where attention units and MLP channels live in a decoder-only family: the adapter interface.

Every fact about a family's module paths and weight layout is in its adapter; the rest of strata
asks the adapter. The layout is a table (as transformers' ``base_model_tp_plan``): for every
projection, whether a unit owns a block of its output rows (``"out"``) or input columns (``"in"``),
and whether that block is sized by query heads, key/value heads or MLP channels.

Units (DESIGN.md): an MLP unit is one intermediate channel. An attention unit is, by ``attn_unit``:

- ``group`` (default): one GQA group, i.e. its ``g = heads / kv_heads`` query heads and its one K/V head;
- ``head``: one query head. Levels remove the same number of query heads from every group (the grid's
  step is one head per group), and the K/V heads stay while any query head does: they are the module's
  base (:meth:`DecoderAdapter.base_params`), paid once when the attention is present. A layer with few
  K/V heads (Qwen2.5-0.5B: 2) then offers 7 widths per group instead of 0, 1 or 2 groups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch

from supernet.errors import UsageError

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedConfig, PreTrainedModel


ATTN_UNITS = ("group", "head")


@dataclass(frozen=True)
class Projection:
    """One linear layer of a module and how units map onto it."""

    name: str  # attribute name on the attention / MLP module
    side: Literal["out", "in"]  # unit = block of output rows ("out") or input columns ("in")
    block: Literal["query", "kv", "channel"]  # block size: query heads, K/V heads, or 1 channel


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
    # parameters of the attention module that belong to no unit and are never sliced (Qwen3's q/k norms)
    attention_shared: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group") -> None:
        if attn_unit not in ATTN_UNITS:
            raise UsageError(f"supernet.attn_unit={attn_unit!r} is not one of {', '.join(ATTN_UNITS)}")
        self.attn_unit = attn_unit
        self.sliding_window: int | None = getattr(config, "sliding_window", None)
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
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

    def output_projection(self, kind: str) -> str:
        """Name of the projection whose input columns a unit owns (o_proj / down_proj)."""
        plan = self.attention_plan if kind == "attn" else self.mlp_plan
        (name,) = [p.name for p in plan if p.side == "in"]
        return name

    def output_linear(self, layer: nn.Module, kind: str) -> nn.Module:
        """The live output projection (o_proj / down_proj) of a module of ``layer``."""
        module = self.attention(layer) if kind == "attn" else self.mlp(layer)
        return getattr(module, self.output_projection(kind))

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
            "position_embeddings": base.rotary_emb(hidden_states, position_ids=position_ids),
            "masks": masks,
        }

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
            position_embeddings=context["position_embeddings"],
        )
        return out[0] if isinstance(out, tuple) else out

    # ---- units -> rows / columns -----------------------------------------------------------------
    def block_index(self, units: torch.Tensor, block: str, *, kind: str) -> torch.Tensor:
        """Row or column indices a set of units owns in a projection of the given block type.

        GQA groups: group u owns query heads [u*g, (u+1)*g) and K/V head u. Query heads (``attn_unit=head``):
        unit u is query head u, and the K/V heads are all kept while any query head is. Each head is
        ``head_dim`` consecutive rows. For the MLP, unit u is channel u.
        """
        geo = self.geometry
        if kind == "mlp":
            return units
        if self.attn_unit == "head":
            heads = units if block == "query" else torch.arange(geo.num_kv_heads if units.numel() else 0)
        else:
            per_unit = geo.group_size if block == "query" else 1
            heads = (units[:, None] * per_unit + torch.arange(per_unit)).reshape(-1)  # [units * per_unit]
        return (heads[:, None] * geo.head_dim + torch.arange(geo.head_dim)).reshape(-1)

    def output_columns(self, units: torch.Tensor, kind: str) -> torch.Tensor:
        """Input columns of the output projection (o_proj / down_proj) that ``units`` own."""
        plan = self.attention_plan if kind == "attn" else self.mlp_plan
        (block,) = [p.block for p in plan if p.side == "in"]
        return self.block_index(units, block, kind=kind)

    def units_total(self, kind: str) -> int:
        if kind == "mlp":
            return self.geometry.intermediate
        return self.geometry.num_heads if self.attn_unit == "head" else self.geometry.num_kv_heads

    def unit_step(self, kind: str) -> int:
        """The fewest units a level may add: one query head from every group with ``attn_unit=head``."""
        return self.geometry.num_kv_heads if kind == "attn" and self.attn_unit == "head" else 1

    def owns(self, proj: Projection, kind: str) -> bool:
        """Whether units own rows/columns of ``proj`` (K/V projections are the base with head units)."""
        return not (kind == "attn" and self.attn_unit == "head" and proj.block == "kv")

    def attention_shape(self, units: int) -> tuple[int, int]:
        """(query heads, K/V heads) of an attention that keeps ``units`` units."""
        if self.attn_unit == "head":
            return units, self.geometry.num_kv_heads if units else 0
        return units * self.geometry.group_size, units

    def unit_params(self, kind: str) -> int:
        """Parameters one unit holds (weights and the biases of row-sliced projections).

        GQA group: (2g + 2) * head_dim * hidden weights (REFERENCES: FLAP's cost, corrected for GQA);
        query head: 2 * head_dim * hidden.
        """
        plan = self.attention_plan if kind == "attn" else self.mlp_plan
        return sum(self._rows_params(proj, kind) for proj in plan if self.owns(proj, kind))

    def base_params(self, kind: str) -> int:
        """Parameters a module holds while it keeps any unit, beyond its units' (K/V with head units)."""
        plan = self.attention_plan if kind == "attn" else self.mlp_plan
        return sum(self.geometry.num_kv_heads * self._rows_params(p, kind) for p in plan if not self.owns(p, kind))

    def _rows_params(self, proj: Projection, kind: str) -> int:
        """Weights (and bias) of one block of ``proj``: a group's or a head's rows/columns, or a channel's."""
        geo = self.geometry
        per_group = geo.group_size if self.attn_unit == "group" else 1
        rows = {"query": per_group * geo.head_dim, "kv": geo.head_dim, "channel": 1}[proj.block]
        bias = rows if proj.side == "out" and self.has_bias(kind, proj.name) else 0
        return rows * geo.hidden + bias

    def has_bias(self, kind: str, name: str) -> bool:
        """Whether the dense family carries a bias on this projection (e.g. Qwen2's q/k/v)."""
        return False

    def fixed_params(self, kind: str) -> int:
        """Parameters of a module that no unit owns (norms inside attention, dense output biases)."""
        return 0
