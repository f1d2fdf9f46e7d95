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
expert criteria of :mod:`supernet.expert_criteria` (``supernet.expert_criterion``).

With ``expert_unit="channel"`` the units are instead the channels of every expert: unit u is each
expert's u-th best channel (experts rank their own channels, on the gate-weighted inputs of ``down_proj``
over the tokens routed to them), so a layer keeps the same width w in all its experts and every expert
(3 H w each, plus the router). This is what a compute budget can buy: a token uses top-k experts, so
``budget.kind=active_params`` counts 3 H k per channel unit (:meth:`MoeMixin.active_params`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from supernet.adapters.mistral import MistralAdapter
from supernet.adapters.qwen2 import Qwen2Adapter
from supernet.adapters.qwen3 import Qwen3Adapter
from supernet.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

EXPERT_TENSORS = ("gate_up_proj", "down_proj")  # the experts module's 3-D weights, expert-major
EXPERT_UNITS = ("expert", "channel")  # a MoE layer's MLP units: whole experts, or one channel of every expert


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
        """Whether the MLP's units are channels of every expert (else whole experts)."""
        return self.expert_unit == "channel"

    def units_total(self, kind: str) -> int:
        if kind != "mlp":
            return super().units_total(kind)
        return self.expert_width if self.channel_units else self.num_experts

    def unit_step(self, kind: str) -> int:
        return 1 if kind == "mlp" else super().unit_step(kind)

    def min_units(self, kind: str) -> int:
        """With expert units a layer keeps top-k experts at least (and never removes its MoE block)."""
        return self.top_k if kind == "mlp" and not self.channel_units else super().min_units(kind)

    def unit_params(self, kind: str) -> int:
        """An expert: its gate, up and down projections (3 H I) and its router row (H); a channel unit: that
        channel's gate and up rows and down column in every expert (3 H E)."""
        if kind != "mlp":
            return super().unit_params(kind)
        hidden = self.geometry.hidden
        return 3 * hidden * self.num_experts if self.channel_units else 3 * hidden * self.expert_width + hidden

    def base_params(self, kind: str) -> int:
        """With channel units the router (E H) stays while any channel does."""
        if kind != "mlp":
            return super().base_params(kind)
        return self.num_experts * self.geometry.hidden if self.channel_units else 0

    def active_params(self, kind: str) -> tuple[int, int]:
        """(per unit, base) parameters one token uses (``budget.kind=active_params``): a channel unit in its
        top-k experts (3 H k) and the whole router (E H, every logit is computed); attention as ``params``."""
        if kind != "mlp":
            return self.unit_params(kind), self.base_params(kind)
        assert self.channel_units, "active parameters are counted on channel units"
        return 3 * self.geometry.hidden * self.top_k, self.base_params(kind)

    def moe_shape(self, kept: int) -> dict[str, int]:
        """A layer's ``layer_shapes`` fields with ``kept`` MLP units: experts kept and their width (and the
        config's own ``intermediate_size``, unchanged)."""
        experts, width = (self.num_experts, kept) if self.channel_units else (kept, self.expert_width)
        if experts == 0 or width == 0:
            experts = width = 0
        return {"num_experts": experts, "expert_width": width, "intermediate_size": self.dense_intermediate}

    # ---- the live experts -------------------------------------------------------------------
    def dense_experts(self, block: nn.Module) -> dict[str, nn.Parameter]:
        """The dense tensors of a sparse MoE block, expert-major: the experts' weights and the router's."""
        return {**{name: getattr(block.experts, name) for name in EXPERT_TENSORS}, "router": block.gate.weight}

    def install_experts(self, block: nn.Module, dense: dict[str, nn.Parameter], units: torch.Tensor | None) -> None:
        """Point ``block`` at the slices of ``units`` (None: the dense tensors themselves) and set the sizes its
        forward reads (expert count, top-k). ``units``: experts [kept], ascending; with channel units the
        channels each expert keeps, [E, kept] ascending per row."""
        if units is not None and units.dim() == 2:
            self._install_channels(block, dense, units)
            return
        count = self.num_experts if units is None else units.numel()
        for name, tensor in dense.items():
            sliced = tensor if units is None else nn.Parameter(tensor.index_select(0, units.to(tensor.device)),
                                                               requires_grad=tensor.requires_grad)  # fmt: skip
            owner, attr = (block.gate, "weight") if name == "router" else (block.experts, name)
            setattr(owner, attr, sliced)
        self._set_counts(block, count)

    def _install_channels(self, block: nn.Module, dense: dict[str, nn.Parameter], channels: torch.Tensor) -> None:
        """Every expert keeps its own channels ``channels[e]``: gate rows c and up rows I + c of
        ``gate_up_proj[e]``, columns c of ``down_proj[e]``; the router is whole."""
        gate_up, down = dense["gate_up_proj"], dense["down_proj"]  # [E, 2I, H], [E, H, I]
        c = channels.to(gate_up.device)  # [E, w]
        rows = torch.cat([c, c + self.expert_width], dim=1)  # [E, 2w]
        grad = gate_up.requires_grad
        block.experts.gate_up_proj = nn.Parameter(gate_up.gather(1, rows[:, :, None].expand(-1, -1, gate_up.shape[2])),
                                                  requires_grad=grad)  # fmt: skip
        block.experts.down_proj = nn.Parameter(down.gather(2, c[:, None, :].expand(-1, down.shape[1], -1)),
                                               requires_grad=grad)  # fmt: skip
        block.gate.weight = dense["router"]
        block.experts.intermediate_dim = c.shape[1]
        self._set_counts(block, self.num_experts)

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
    """Qwen2-MoE (Qwen1.5-MoE, Qwen2-57B-A14B): routed experts as Qwen3-MoE's, plus a shared expert (an MLP
    of ``shared_expert_intermediate_size`` and a sigmoid gate) that every token uses; the shared expert is
    kept whole (its parameters count as fixed, like norms). Its checkpoints do not renormalise the top-k
    weights (``norm_topk_prob=false``)."""

    model_types = ("qwen2_moe",)
    experts_field = "num_experts"

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group", expert_unit: str = "expert") -> None:
        check_every_layer_sparse(config, "Qwen2-MoE")
        super().__init__(config, attn_unit=attn_unit, expert_unit=expert_unit)
        self.shared_width = int(config.shared_expert_intermediate_size)
        self.qkv_bias = bool(getattr(config, "qkv_bias", True))

    def has_bias(self, kind: str, name: str) -> bool:
        return self.qkv_bias and super().has_bias(kind, name)

    def fixed_params(self, kind: str) -> int:
        """The shared expert (3 H I_shared) and its gate (H)."""
        if kind != "mlp":
            return super().fixed_params(kind)
        return 3 * self.geometry.hidden * self.shared_width + self.geometry.hidden


class MixtralAdapter(MoeMixin, MistralAdapter):
    model_types = ("mixtral",)
