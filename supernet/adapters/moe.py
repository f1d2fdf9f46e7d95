"""Mixture-of-experts families (Qwen3-MoE, Mixtral): a layer's MLP is its routed experts, one unit per
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
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from supernet.adapters.mistral import MistralAdapter
from supernet.adapters.qwen3 import Qwen3Adapter
from supernet.errors import UsageError

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

EXPERT_TENSORS = ("gate_up_proj", "down_proj")  # the experts module's 3-D weights, expert-major


class MoeMixin:
    """The expert facts shared by the MoE families; mixed in before the family's dense adapter."""

    moe: ClassVar[bool] = True
    mlp_plan = ()  # no Linear projections: the experts' tensors are 3-D (``dense_experts``)
    gguf_refusal = "llama.cpp's deci graph has no routed experts (strata-export writes dense families only)"

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group") -> None:
        super().__init__(config, attn_unit=attn_unit)
        self.num_experts = int(config.num_local_experts)
        self.top_k = int(config.num_experts_per_tok)
        self.expert_width = int(getattr(config, "moe_intermediate_size", None) or config.intermediate_size)
        self.dense_intermediate = int(config.intermediate_size)  # the config's own field, kept in layer_shapes

    # ---- units ------------------------------------------------------------------------------
    def units_total(self, kind: str) -> int:
        return self.num_experts if kind == "mlp" else super().units_total(kind)

    def unit_step(self, kind: str) -> int:
        return 1 if kind == "mlp" else super().unit_step(kind)

    def min_units(self, kind: str) -> int:
        """A layer keeps top-k experts at least (and never removes its MoE block)."""
        return self.top_k if kind == "mlp" else super().min_units(kind)

    def unit_params(self, kind: str) -> int:
        """An expert: its gate, up and down projections (3 H I) and its router row (H)."""
        hidden = self.geometry.hidden
        return 3 * hidden * self.expert_width + hidden if kind == "mlp" else super().unit_params(kind)

    def base_params(self, kind: str) -> int:
        return 0 if kind == "mlp" else super().base_params(kind)

    # ---- the live experts -------------------------------------------------------------------
    def dense_experts(self, block: nn.Module) -> dict[str, nn.Parameter]:
        """The dense tensors of a sparse MoE block, expert-major: the experts' weights and the router's."""
        return {**{name: getattr(block.experts, name) for name in EXPERT_TENSORS}, "router": block.gate.weight}

    def install_experts(self, block: nn.Module, dense: dict[str, nn.Parameter], units: torch.Tensor | None) -> None:
        """Point ``block`` at the slices of experts ``units`` (ascending; None: every expert, the dense
        tensors themselves) and set the sizes its forward reads (expert count, top-k)."""
        count = self.num_experts if units is None else units.numel()
        for name, tensor in dense.items():
            sliced = tensor if units is None else nn.Parameter(tensor.index_select(0, units.to(tensor.device)),
                                                               requires_grad=tensor.requires_grad)  # fmt: skip
            owner, attr = (block.gate, "weight") if name == "router" else (block.experts, name)
            setattr(owner, attr, sliced)
        block.experts.num_experts = count
        block.gate.num_experts = count
        block.gate.top_k = min(self.top_k, count)
        if hasattr(block, "top_k"):
            block.top_k = block.gate.top_k


class Qwen3MoeAdapter(MoeMixin, Qwen3Adapter):
    model_types = ("qwen3_moe",)

    def __init__(self, config: PreTrainedConfig, *, attn_unit: str = "group") -> None:
        sparse = [i for i in range(config.num_hidden_layers)
                  if i not in config.mlp_only_layers and (i + 1) % config.decoder_sparse_step == 0]  # fmt: skip
        if len(sparse) != config.num_hidden_layers:
            raise UsageError("strata prunes Qwen3-MoE models whose every layer is sparse (decoder_sparse_step=1, "
                             f"mlp_only_layers=[]); this one has dense MLPs in layers "
                             f"{sorted(set(range(config.num_hidden_layers)) - set(sparse))}")  # fmt: skip
        super().__init__(config, attn_unit=attn_unit)


class MixtralAdapter(MoeMixin, MistralAdapter):
    model_types = ("mixtral",)
