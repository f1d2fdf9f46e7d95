"""Mixture-of-experts families (Qwen3-MoE, Qwen2-MoE, Mixtral): a layer's MLP is its routed experts, one unit per
whole expert.

Where experts live (transformers 5): the decoder layer's ``mlp`` is a sparse MoE block whose ``experts``
hold every expert's weights in two 3-D tensors, ``gate_up_proj`` [E, 2I, H] (gate rows, then up rows) and
``down_proj`` [E, H, I], and whose ``gate`` (the router) holds one row per expert, ``weight`` [E, H].
Expert unit e owns ``gate_up_proj[e]``, ``down_proj[e]`` and router row e: 3 H I + H parameters.

Keeping experts K keeps those slices: the router's softmax and top-k then run over K only, and the
top-k weights are renormalised as the family does (Mixtral always, Qwen3-MoE with ``norm_topk_prob``,
true in its released checkpoints), so a token whose top-k experts are all kept is routed and weighted
exactly as in the dense model. Without ``norm_topk_prob`` the weights are softmax probabilities over
the kept experts, each above its dense value by the removed experts' share of the softmax. A
layer keeps at least top-k experts (``min_units``): top-k is never above the experts it has.

Experts have no output projection of their own to compensate: a removed expert's tokens go to the next
kept expert by the router's own ranking (what REAP and frequency pruning do). Units are ranked by the
expert criteria of :mod:`supernet.variants.expert_criteria` (``supernet.expert_criterion``).

With ``expert_unit="channel"`` the units are instead the channels of every expert: unit u is each
expert's u-th best channel (experts rank their own channels, on the gate-weighted inputs of ``down_proj``
over the tokens routed to them), so a layer keeps the same width w in all its experts and every expert
(3 H w each, plus the router). This is what a compute budget can buy: a token uses top-k experts, so
``budget.kind=active_params`` counts 3 H k per channel unit (:meth:`MoeMixin.active_params`).

With ``expert_unit="both"`` a layer has both: an ``experts`` module (how many experts it keeps, by the
expert criterion; a unit is an expert's router row, H) and the ``mlp`` module (the width every kept
expert keeps, by its own channel ranking; a unit is one channel of one expert, 3 H). The level grid
costs the two together, e R + w 3 H c(e) (``supernet.space.grid``), so one search trades experts for width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from supernet.errors import UsageError
from supernet.io.adapters.base import DecoderAdapter, Projection
from supernet.io.adapters.mistral import MistralAdapter
from supernet.io.adapters.qwen2 import Qwen2Adapter
from supernet.io.adapters.qwen3 import Qwen3Adapter
from supernet.kinds import EXPERTS, SHARED

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

EXPERT_TENSORS = ("gate_up_proj", "down_proj")  # the experts module's 3-D weights, expert-major
# a MoE layer's MLP units: whole experts, one channel of every expert, or both (an expert count and a width)
EXPERT_UNITS = ("expert", "channel", "both")


class MoeMixin:
    """The expert facts shared by the MoE families; mixed in before the family's dense adapter."""

    moe: ClassVar[bool] = True
    experts_field: ClassVar[str] = "num_local_experts"  # the config field of the routed experts' count
    mlp_plan = ()  # no Linear projections: the experts' tensors are 3-D (``dense_experts``)
    gguf_refusal = "llama.cpp's deci graph has no routed experts (strata-export writes dense families only)"

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group", expert_unit: str = "expert") -> None:
        super().__init__(config, attn_unit=attn_unit)
        self.expert_unit = expert_unit
        self.num_experts = int(getattr(config, self.experts_field))
        self.top_k = int(config.num_experts_per_tok)
        self.expert_width = int(getattr(config, "moe_intermediate_size", None) or config.intermediate_size)
        self.dense_intermediate = int(config.intermediate_size)  # the config's own field, kept in layer_shapes

    # ---- units ------------------------------------------------------------------------------
    @property
    def channel_units(self) -> bool:
        """Whether the MLP's units are channels of the experts (else whole experts)."""
        return self.expert_unit in ("channel", "both")

    @property
    def grid_kinds(self) -> tuple[str, ...]:
        """The modules of a layer: with ``expert_unit=both`` an expert count beside the experts' width."""
        return (*super().grid_kinds, EXPERTS) if self.expert_unit == "both" else super().grid_kinds

    def units_total(self, kind: str) -> int:
        if kind == EXPERTS:
            return self.num_experts
        if kind != "mlp":
            return super().units_total(kind)
        return self.expert_width if self.channel_units else self.num_experts

    def unit_step(self, kind: str) -> int:
        return 1 if kind in ("mlp", EXPERTS) else super().unit_step(kind)

    def min_units(self, kind: str) -> int:
        """A layer keeps top-k experts at least (with whole expert units it never removes its MoE block; with
        both, a width of 0 removes it)."""
        if kind == EXPERTS or (kind == "mlp" and not self.channel_units):
            return self.top_k
        return super().min_units(kind)

    def unit_params(self, kind: str) -> int:
        """An expert: its gate, up and down projections (3 H I) and its router row (H); a channel unit: that
        channel's gate and up rows and down column in every expert (3 H E). With both kinds an ``experts``
        unit is a router row (H) and an ``mlp`` unit a channel of one expert (3 H): the grid multiplies."""
        hidden = self.geometry.hidden
        if kind == EXPERTS:
            return hidden
        if kind != "mlp":
            return super().unit_params(kind)
        if self.expert_unit == "both":
            return 3 * hidden
        return 3 * hidden * self.num_experts if self.channel_units else 3 * hidden * self.expert_width + hidden

    def base_params(self, kind: str) -> int:
        """With channel units the router (E H) stays while any channel does."""
        if kind == EXPERTS:
            return 0
        if kind != "mlp":
            return super().base_params(kind)
        return self.num_experts * self.geometry.hidden if self.expert_unit == "channel" else 0

    def block_unit_params(self) -> int:
        """Parameters of a layer's units: every expert (3 H I + H each) and the attention's."""
        experts = self.num_experts * (3 * self.geometry.hidden * self.expert_width + self.geometry.hidden)
        return experts + self.units_total("attn") * self.unit_params("attn") + self.base_params("attn")

    def active_params(self, kind: str) -> tuple[int, int]:
        """(per unit, base) parameters one token uses (``budget.kind=active_params``): a channel unit in its
        top-k experts (3 H k) and the whole router (E H, every logit is computed); attention as ``params``.
        With both kinds the grid counts a channel of one expert (3 H) in min(k, e) of the e kept experts."""
        if kind == EXPERTS:
            return self.unit_params(kind), 0
        if kind != "mlp":
            return self.unit_params(kind), self.base_params(kind)
        assert self.channel_units, "active parameters are counted on channel units"
        if self.expert_unit == "both":
            return self.unit_params(kind), 0
        return 3 * self.geometry.hidden * self.top_k, self.base_params(kind)

    def moe_shape(self, experts: int, width: int) -> dict[str, int]:
        """A layer's ``layer_shapes`` fields: ``experts`` kept of ``width`` channels each (and the config's own
        ``intermediate_size``, unchanged)."""
        if experts == 0 or width == 0:
            experts = width = 0
        return {"num_experts": experts, "expert_width": width, "intermediate_size": self.dense_intermediate}

    # ---- the live experts -------------------------------------------------------------------
    def dense_experts(self, block: nn.Module) -> dict[str, nn.Parameter]:
        """The dense tensors of a sparse MoE block, expert-major: the experts' weights and the router's."""
        return {**{name: getattr(block.experts, name) for name in EXPERT_TENSORS}, "router": block.gate.weight}

    def install_experts(self, block: nn.Module, dense: dict[str, nn.Parameter], experts: torch.Tensor | None,
                        channels: torch.Tensor | None = None) -> None:  # fmt: skip
        """Point ``block`` at the slices of the kept experts and channels and set the sizes its forward reads
        (expert count, top-k, width). ``experts``: [kept] ascending (None: all); ``channels``: what each dense
        expert keeps, [E, width] ascending per row (None: every channel); the dense tensors themselves when
        both are None."""
        count = self.num_experts if experts is None else experts.numel()
        tensors = dict(dense)
        if experts is not None:
            for name, tensor in dense.items():
                tensors[name] = tensor.index_select(0, experts.to(tensor.device))
        if channels is not None:
            c = channels.to(tensors["gate_up_proj"].device)  # [E, w]
            c = c if experts is None else c.index_select(0, experts.to(c.device))  # [kept, w]
            gate_up, down = tensors["gate_up_proj"], tensors["down_proj"]  # [kept, 2I, H], [kept, H, I]
            rows = torch.cat([c, c + self.expert_width], dim=1)  # [kept, 2w]: gate rows c, up rows I + c
            tensors["gate_up_proj"] = gate_up.gather(1, rows[:, :, None].expand(-1, -1, gate_up.shape[2]))
            tensors["down_proj"] = down.gather(2, c[:, None, :].expand(-1, down.shape[1], -1))
        for name, tensor in tensors.items():
            owner, attr = (block.gate, "weight") if name == "router" else (block.experts, name)
            kept = tensor if tensor is dense[name] else nn.Parameter(tensor, requires_grad=dense[name].requires_grad)
            setattr(owner, attr, kept)
        block.experts.intermediate_dim = self.expert_width if channels is None else channels.shape[1]
        self._set_counts(block, count)

    def _set_counts(self, block: nn.Module, count: int) -> None:
        block.experts.num_experts = count
        block.gate.num_experts = count
        block.gate.top_k = min(self.top_k, count)
        if hasattr(block, "top_k"):
            block.top_k = block.gate.top_k


def check_every_layer_sparse(config: PreTrainedConfig, family: str) -> None:
    """Qwen's MoE configs may keep dense MLPs in some layers (``mlp_only_layers``, ``decoder_sparse_step``);
    strata prunes those whose every layer is a mixture."""
    dense = [i for i in range(config.num_hidden_layers)
             if i in config.mlp_only_layers or (i + 1) % config.decoder_sparse_step]  # fmt: skip
    if dense:
        raise UsageError(f"strata prunes {family} models whose every layer is sparse (decoder_sparse_step=1, "
                         f"mlp_only_layers=[]); this one has dense MLPs in layers {dense}")  # fmt: skip


class Qwen3MoeAdapter(MoeMixin, Qwen3Adapter):
    model_types = ("qwen3_moe",)

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group", expert_unit: str = "expert") -> None:
        check_every_layer_sparse(config, "Qwen3-MoE")
        super().__init__(config, attn_unit=attn_unit, expert_unit=expert_unit)


class Qwen2MoeAdapter(MoeMixin, Qwen2Adapter):
    """Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): routed experts as Qwen3-MoE's, plus a shared expert that every
    token uses, ``mlp.shared_expert`` (a gated MLP of ``shared_expert_intermediate_size`` channels) scaled per
    token by ``sigmoid(mlp.shared_expert_gate(x))``. The shared expert is a module of its own, kind ``shared``:
    its units are its channels (3 H each), ranked and compensated as a dense MLP's (the bias that
    compensation adds sits in its ``down_proj``, inside the gate's scaling, where the removed channels'
    contribution was); its gate (H) stays. Its checkpoints do not renormalise the top-k weights
    (``norm_topk_prob=false``)."""

    model_types = ("qwen2_moe",)
    experts_field = "num_experts"
    shared_plan = DecoderAdapter.mlp_plan  # the shared expert: gate_proj, up_proj, down_proj

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group", expert_unit: str = "expert") -> None:
        check_every_layer_sparse(config, "Qwen2-MoE")
        super().__init__(config, attn_unit=attn_unit, expert_unit=expert_unit)
        self.shared_width = int(config.shared_expert_intermediate_size)
        self.qkv_bias = bool(getattr(config, "qkv_bias", True))

    def has_bias(self, kind: str, name: str) -> bool:
        return self.qkv_bias and super().has_bias(kind, name)

    @property
    def grid_kinds(self) -> tuple[str, ...]:
        return (*super().grid_kinds, SHARED)

    def plan(self, kind: str) -> tuple[Projection, ...]:
        return self.shared_plan if kind == SHARED else super().plan(kind)

    def module(self, layer: nn.Module, kind: str) -> nn.Module:
        return self.mlp(layer).shared_expert if kind == SHARED else super().module(layer, kind)

    def set_module(self, layer: nn.Module, kind: str, module: nn.Module) -> None:
        if kind == SHARED:
            self.mlp(layer).shared_expert = module
        else:
            super().set_module(layer, kind, module)

    def units_total(self, kind: str) -> int:
        return self.shared_width if kind == SHARED else super().units_total(kind)

    def unit_step(self, kind: str) -> int:
        return 1 if kind == SHARED else super().unit_step(kind)

    def min_units(self, kind: str) -> int:
        """The routed experts stay while the block does (it also computes the shared expert): with channel units
        a layer keeps one channel at least (one level), never a width of 0. The shared expert may go."""
        if kind == SHARED:
            return 0
        return 1 if kind == "mlp" and self.channel_units else super().min_units(kind)

    def unit_params(self, kind: str) -> int:
        return 3 * self.geometry.hidden if kind == SHARED else super().unit_params(kind)

    def base_params(self, kind: str) -> int:
        return 0 if kind == SHARED else super().base_params(kind)

    def block_unit_params(self) -> int:
        return super().block_unit_params() + self.shared_width * self.unit_params(SHARED)

    def fixed_params(self, kind: str) -> int:
        """The shared expert's gate (H), which stays with the routed block."""
        if kind == SHARED:
            return 0
        if kind != "mlp":
            return super().fixed_params(kind)
        return self.geometry.hidden


class MixtralAdapter(MoeMixin, MistralAdapter):
    model_types = ("mixtral",)
