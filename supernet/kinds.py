"""The kinds of module a layer has, by name, and the key of one module: the words every layer of strata shares."""

from __future__ import annotations

ATTN = "attn"  # attention: GQA groups (or query heads of every group)
MLP = "mlp"  # the MLP: channels (a mixture: whole experts, or one channel of every expert)
EXPERTS = "experts"  # a mixture's expert count beside its experts' width (supernet.expert_unit=both)
SHARED = "shared"  # Qwen2-MoE's shared expert: its channels, as a dense MLP's
KINDS = (ATTN, MLP)  # the kinds every layer has, in a layer's module order

ModuleKey = tuple[int, str]  # (layer, kind)
