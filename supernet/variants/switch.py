"""Switch a live model's modules between variants in place, slicing from the dense weights.

A variant (README.md, Design) is a module at one level: the units it keeps and its compensation. Switching
touches only the module asked for: its projections get new parameters sliced from the dense tensors
(kept by reference, not copied), the output projection's bias gets the compensation, and a module
with no unit left is replaced by ``RemovedAttention`` / ``RemovedMLP``. The dense modules come back
bit-for-bit when a module is switched to ``None``. Weight vectors units own (the adapter's
``attention_norms``) are sliced with the same rows, and the adapter sets the sizes an attention's
forward reads from itself (``resize_attention``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from supernet.kinds import EXPERTS, MLP, SHARED
from supernet.variants.compensation import flap_bias

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from supernet.io.adapters.base import DecoderAdapter


@dataclass
class Variant:
    """A module at one level: kept units and compensation of its output projection.

    When ``source_units`` is set, the compensation was fitted for those units (a superset of
    ``units``: the coarse level above): the output projection keeps the columns of ``units`` from
    ``out_weight`` (or the dense weight), and the columns D it keeps fewer move their mean contribution
    into the bias, b += W[:, D] @ mean[D] (FLAP's bias compensation for D).
    """

    units: torch.Tensor  # [kept] unit indices, ascending
    out_bias: torch.Tensor | None = None  # [hidden] added to the output projection's bias
    out_weight: torch.Tensor | None = None  # [hidden, columns of source_units (or units)] refit output projection
    source_units: torch.Tensor | None = None  # [source] units the compensation was fitted for, ascending
    mean: torch.Tensor | None = None  # [in] mean input of the output projection (with source_units)

    @property
    def adds_bias(self) -> bool:
        return self.out_bias is not None or (
            self.source_units is not None and self.source_units.numel() > self.units.numel()
        )


def kept_units(ranking: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` best units of a ranking, ascending (so nested levels slice consistently); a ranking per
    row ([E, I]: each expert's channels) keeps ``count`` in every row."""
    return ranking[..., :count].sort(dim=-1).values


class Switcher:
    """Holds references to the dense tensors of every module and installs variants in place."""

    def __init__(self, model: PreTrainedModel, adapter: DecoderAdapter) -> None:
        self.model = model
        self.adapter = adapter
        self.layers = adapter.decoder_layers(model)
        self.dense_modules: dict[tuple[int, str], nn.Module] = {}
        self.dense_params: dict[tuple[int, str], dict[str, tuple[nn.Parameter, nn.Parameter | None]]] = {}
        self.dense_norms: dict[int, dict[str, nn.Parameter]] = {}  # the adapter's attention_norms per layer
        self.dense_experts: dict[int, dict[str, nn.Parameter]] = {}  # MoE layers: experts' and router's tensors
        self.current: dict[tuple[int, str], Variant | None] = {}
        for i, layer in enumerate(self.layers):
            for kind in adapter.module_kinds:
                module = self._module(layer, kind)
                self.dense_modules[i, kind] = module
                self.dense_params[i, kind] = {
                    p.name: (getattr(module, p.name).weight, getattr(module, p.name).bias) for p in self._plan(kind)
                }
                self.current[i, kind] = None
            if adapter.moe:
                self.dense_experts[i] = adapter.dense_experts(self.dense_modules[i, "mlp"])
                for kind in set(adapter.grid_kinds) - set(adapter.module_kinds):  # the expert count (both units)
                    self.current[i, kind] = None
            attention = self.dense_modules[i, "attn"]
            self.dense_norms[i] = {p.name: getattr(attention, p.name).weight for p in adapter.attention_norms}

    def _plan(self, kind: str):
        return self.adapter.plan(kind)

    def _module(self, layer: nn.Module, kind: str) -> nn.Module:
        return self.adapter.module(layer, kind)

    def _install(self, layer_idx: int, kind: str, module: nn.Module) -> None:
        self.adapter.set_module(self.layers[layer_idx], kind, module)

    def set(self, layer_idx: int, kind: str, variant: Variant | None) -> None:
        """Install ``variant`` (None: the dense module) for one module."""
        key = (layer_idx, kind)
        if self._routed(kind):
            self._record_routed(key, variant)
            self._set_experts(layer_idx)
            return
        dense = self.dense_modules[key]
        if variant is None:
            self._install(layer_idx, kind, dense)
            for name, (weight, bias) in self.dense_params[key].items():
                _assign(getattr(dense, name), weight, bias)
            if kind == "attn":
                for name, weight in self.dense_norms[layer_idx].items():
                    _assign_vector(getattr(dense, name), weight)
                geo = self.adapter.geometry
                self.adapter.resize_attention(dense, geo.num_heads, geo.num_kv_heads)
        elif variant.units.numel() == 0:
            self._install(layer_idx, kind, self._removed(layer_idx, kind, variant, dense))
        else:
            self._install(layer_idx, kind, dense)
            self._slice(key, dense, variant)
        self.current[key] = variant

    def _routed(self, kind: str) -> bool:
        """Whether ``kind`` is one of a MoE block's routed modules (its experts' width, its expert count)."""
        return self.adapter.moe and kind in (MLP, EXPERTS)

    def _record_routed(self, key: tuple[int, str], variant: Variant | None) -> None:
        """Note a routed module's variant (experts carry no compensation); the block is installed after."""
        assert variant is None or not (variant.adds_bias or variant.out_weight is not None), "experts: not compensated"
        self.current[key] = variant

    def moe_units(self, layer_idx: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(experts kept [kept] or None for all, channels each dense expert keeps [E, width] or None for all) of
        a MoE layer, from its live variants: the MLP's units are experts (1-D) or channels (2-D), and with both
        unit kinds the ``experts`` module holds the experts."""
        mlp, count = self.current[layer_idx, "mlp"], self.current.get((layer_idx, EXPERTS))
        experts = None if count is None else count.units
        channels = None
        if mlp is not None and mlp.units.dim() == 1:
            experts = mlp.units
        elif mlp is not None:
            channels = mlp.units
        return experts, channels

    def _set_experts(self, layer_idx: int) -> None:
        """The MoE block of a layer keeping the experts and channels of its variants; experts carry no
        compensation, and a block with no expert or no channel left is removed."""
        dense = self.dense_modules[layer_idx, "mlp"]
        experts, channels = self.moe_units(layer_idx)
        if (experts is not None and experts.numel() == 0) or (channels is not None and channels.shape[-1] == 0):
            from supernet.io.export.modeling_strata import RemovedMLP  # transformers, only when a module goes

            module = RemovedMLP(self.adapter.geometry.hidden, bias=False)
            self._install(layer_idx, "mlp", module.to(self.dense_experts[layer_idx]["router"]))
            return
        self._install(layer_idx, "mlp", dense)
        self.adapter.install_experts(dense, self.dense_experts[layer_idx], experts, channels)

    def _removed(self, layer_idx: int, kind: str, variant: Variant, dense: nn.Module) -> nn.Module:
        from supernet.io.export.modeling_strata import RemovedAttention, RemovedMLP  # transformers, when needed

        geo = self.adapter.geometry
        weight = self.dense_params[layer_idx, kind][self.adapter.output_projection(kind)][0]
        _, bias = self._output(kind, weight, None, variant)
        if kind == "attn":
            module = RemovedAttention(layer_idx, geo.hidden, geo.head_dim, bias is not None)
        else:
            module = RemovedMLP(geo.hidden, bias is not None)
        module.to(device=weight.device, dtype=weight.dtype)
        if bias is not None:
            module.bias.data.copy_(bias)
        return module

    def _output(
        self, kind: str, weight: torch.Tensor, bias: torch.Tensor | None, variant: Variant
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output projection's (weight [out, kept cols], bias [out]) of a variant.

        weight, bias: the dense output projection's."""
        source = variant.units if variant.source_units is None else variant.source_units
        columns = self.adapter.output_columns(source, kind).to(weight.device)  # [source cols]
        if variant.out_weight is not None:  # the refit columns replace the slice: the dense ones are not copied
            new_weight = variant.out_weight.to(device=weight.device, dtype=weight.dtype)  # [out, source cols]
        else:
            new_weight = weight.index_select(1, columns)  # [out, source cols]
        extra = None if variant.out_bias is None else variant.out_bias.to(device=weight.device, dtype=torch.float64)
        if variant.source_units is not None:
            kept = self.adapter.output_columns(variant.units, kind).to(weight.device)
            position = torch.searchsorted(columns, kept)  # [kept cols] places of the kept columns in the source
            dropped = torch.ones(len(columns), dtype=torch.bool, device=weight.device)
            dropped[position] = False
            mean = variant.mean.to(weight.device)[columns[dropped]]  # [|D|]
            moved = flap_bias(new_weight[:, dropped], mean)  # [out]
            extra = moved if extra is None else extra + moved
            new_weight = new_weight.index_select(1, position)  # [out, kept cols]
        if extra is not None:
            extra = extra.to(weight.dtype)
            bias = extra if bias is None else bias + extra
        return new_weight, bias

    def _slice(self, key: tuple[int, str], module: nn.Module, variant: Variant) -> None:
        kind = key[1]
        out_name = self.adapter.output_projection(kind)
        for proj in self._plan(kind):
            weight, bias = self.dense_params[key][proj.name]
            if proj.name == out_name:
                new_weight, new_bias = self._output(kind, weight, bias, variant)
            else:
                index = self.adapter.block_index(variant.units, proj.block, kind=kind).to(weight.device)
                if proj.side == "out":
                    new_weight = weight.index_select(0, index)  # [kept rows, in]
                    new_bias = bias.index_select(0, index) if bias is not None else None
                else:
                    new_weight = weight.index_select(1, index)  # [out, kept cols]
                    new_bias = bias
            _assign(getattr(module, proj.name), new_weight, new_bias)
        if kind == "attn":
            for norm in self.adapter.attention_norms:
                weight = self.dense_norms[key[0]][norm.name]
                index = self.adapter.block_index(variant.units, norm.block, kind=kind).to(weight.device)
                _assign_vector(getattr(module, norm.name), weight.index_select(0, index))  # [kept rows]
            self.adapter.resize_attention(module, *self.adapter.attention_shape(variant.units.numel()))

    def apply(self, variants: dict[tuple[int, str], Variant | None]) -> int:
        """Install many variants, touching only modules whose variant changed; returns how many did."""
        changed = [key for key, variant in variants.items() if self.current[key] is not variant]
        blocks = {}  # MoE layers whose routed modules changed: each installed once, whatever changed in it
        for layer_idx, kind in changed:
            if self._routed(kind):
                self._record_routed((layer_idx, kind), variants[layer_idx, kind])
                blocks[layer_idx] = None
            else:
                self.set(layer_idx, kind, variants[layer_idx, kind])
        for layer_idx in blocks:
            self._set_experts(layer_idx)
        return len(changed)

    def shapes(self) -> list[dict]:
        """Per-layer widths of the live model, in ``StrataConfig.layer_shapes`` form."""
        geo = self.adapter.geometry
        shapes = []
        for i in range(len(self.layers)):
            attn, mlp = self.current[i, "attn"], self.current[i, "mlp"]
            heads, kv_heads = (
                (geo.num_heads, geo.num_kv_heads)
                if attn is None
                else (self.adapter.attention_shape(attn.units.numel()))
            )
            channels_kept = self.adapter.units_total("mlp") if mlp is None else mlp.units.shape[-1]
            shape = {
                "num_attention_heads": heads,
                "num_key_value_heads": kv_heads,
                "intermediate_size": channels_kept,
                "attn_out_bias": self._has_out_bias(i, "attn"),
                "mlp_out_bias": self._has_out_bias(i, "mlp"),
            }
            if self.adapter.moe:  # experts kept and their width; the config's own width field stays
                experts, channels = self.moe_units(i)
                width = self.adapter.expert_width if channels is None else channels.shape[-1]
                experts_kept = self.adapter.num_experts if experts is None else experts.numel()
                shape |= self.adapter.moe_shape(experts_kept, width)
            if (i, SHARED) in self.current:  # Qwen2-MoE's shared expert: its width and compensation bias
                shared = self.current[i, SHARED]
                total = self.adapter.units_total(SHARED)
                shape["shared_expert_width"] = total if shared is None else shared.units.numel()
                shape["shared_out_bias"] = self._has_out_bias(i, SHARED)
            shapes.append(shape)
        return shapes

    def _has_out_bias(self, layer_idx: int, kind: str) -> bool:
        if kind == "mlp" and self.adapter.moe:
            return False
        variant = self.current[layer_idx, kind]
        dense_bias = self.dense_params[layer_idx, kind][self.adapter.output_projection(kind)][1]
        if variant is not None and variant.units.numel() == 0:
            return variant.adds_bias
        return dense_bias is not None or (variant is not None and variant.adds_bias)


def _assign_vector(norm: nn.Module, weight: torch.Tensor) -> None:
    """Point a norm at a new weight vector (the dense parameter itself when it is the dense one)."""
    grad = norm.weight.requires_grad
    norm.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight, requires_grad=grad)


def _assign(linear: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
    """Point a Linear at new tensors (parameters are reused when they already are the dense ones)."""
    grad = linear.weight.requires_grad
    linear.weight = weight if isinstance(weight, nn.Parameter) else nn.Parameter(weight, requires_grad=grad)
    if bias is None:
        linear.bias = None
    else:
        linear.bias = bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias, requires_grad=grad)
    linear.out_features, linear.in_features = weight.shape
