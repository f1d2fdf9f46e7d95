"""A decoder-only LM whose layers have their own widths: the modeling file of every model strata saves.

Saved next to the weights and named by ``auto_map`` in ``config.json``, so that
``AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)`` loads a pruned model in a
process that never imports strata. It imports only torch and transformers.

The model is the dense family's own (Llama, Mistral, Qwen2, Qwen3, Gemma 2, Gemma 3 text, Phi-3, OLMo 2,
Granite, Qwen3-MoE, Qwen2-MoE, Mixtral: ``base_model_type``) with each decoder layer rebuilt from a per-layer copy of
the config (``layer_shapes[i]``: query heads, K/V heads, MLP channels or, in a mixture of experts, the
experts kept (``num_experts``; top-k is capped at it), and whether ``o_proj`` / ``down_proj`` carry a
bias), so every size a layer's modules derive from the config follows: Phi-3's fused ``qkv_proj`` and
``gate_up_proj`` and the split of their outputs, OLMo 2's q/k norms over the kept heads, a MoE block's
experts and router. A sub-block with no unit left is a ``RemovedAttention`` / ``RemovedMLP``: it adds
only its bias (zero when it has none) to the residual.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING

STRATA_KEYS = ("base_model_type", "layer_shapes")


class StrataConfig(PreTrainedConfig):
    """The dense family's config (all its fields, flat) plus ``base_model_type`` and ``layer_shapes``.

    ``layer_shapes``: one dict per layer with ``num_attention_heads``, ``num_key_value_heads``,
    ``intermediate_size`` (MLP channels; a mixture's: the dense config's, unchanged), ``attn_out_bias`` and
    ``mlp_out_bias``; a mixture of experts' layers add ``num_experts`` and ``expert_width`` (the experts kept and
    the channels each keeps, both 0 for a removed block), and Qwen2-MoE's ``shared_expert_width`` and
    ``shared_out_bias`` (its shared expert's channels and compensation bias).

    ``config.json`` names the dense family's ``model_type`` (``to_dict``): ``AutoConfig`` then reads it
    without remote code and without asking (what ``AutoTokenizer.from_pretrained`` does first), while
    ``auto_map`` still sends ``AutoModelForCausalLM(..., trust_remote_code=True)`` here.
    """

    model_type = "strata"

    def __init__(self, base_model_type: str = "llama", layer_shapes: list[dict] | None = None, **kwargs):
        self.base_model_type = base_model_type
        self.layer_shapes = list(layer_shapes or [])
        super().__init__(**kwargs)

    def to_dict(self) -> dict:
        out = super().to_dict()
        out["model_type"] = self.base_model_type
        return out

    @classmethod
    def get_config_dict(cls, *args, **kwargs) -> tuple[dict, dict]:
        """config.json's ``model_type`` is the family's: read it as ours (no mismatch warning)."""
        config_dict, kwargs = super().get_config_dict(*args, **kwargs)
        if "base_model_type" in config_dict:
            config_dict["model_type"] = cls.model_type
        return config_dict, kwargs

    def base_config(self) -> PreTrainedConfig:
        """The dense family's config with the global (unpruned) sizes."""
        fields = {k: v for k, v in self.to_dict().items() if k not in STRATA_KEYS + ("model_type", "auto_map")}
        fields.pop("architectures", None)
        return CONFIG_MAPPING[self.base_model_type](**fields)


class RemovedAttention(nn.Module):
    """An attention sub-block with no head left: its output is its bias (or zero) at every token.

    It still records an empty key/value entry in the cache so that the cache's length (read from
    layer 0 by ``generate``) stays right when layer 0's attention is the one removed.
    """

    def __init__(self, layer_idx: int, hidden_size: int, head_dim: int, bias: bool) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.head_dim = head_dim
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None

    def forward(self, hidden_states, position_embeddings=None, attention_mask=None, cache=None, **kwargs):
        batch, tokens, hidden = hidden_states.shape
        if cache is not None:
            empty = hidden_states.new_zeros(batch, 0, tokens, self.head_dim)  # [batch, 0 heads, tokens, d]
            cache.update(empty, empty, self.layer_idx, kwargs=kwargs)
        out = hidden_states.new_zeros(batch, tokens, hidden)
        if self.bias is not None:
            out = out + self.bias
        return out, None


class RemovedMLP(nn.Module):
    """An MLP sub-block with no channel left: its output is its bias (or zero) at every token."""

    def __init__(self, hidden_size: int, bias: bool) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(hidden_size)) if bias else None

    def forward(self, hidden_states):
        out = torch.zeros_like(hidden_states)
        return out + self.bias if self.bias is not None else out


def _layer_config(base: PreTrainedConfig, shape: dict, head_dim: int) -> PreTrainedConfig:
    cfg = copy.copy(base)
    cfg.num_attention_heads = max(shape["num_attention_heads"], 1)
    cfg.num_key_value_heads = max(shape["num_key_value_heads"], 1)
    cfg.intermediate_size = shape["intermediate_size"]
    cfg.head_dim = head_dim
    if "num_experts" in shape:  # a mixture of experts: the experts it keeps (top-k no more), their width
        count = max(shape["num_experts"], 1)
        cfg.num_local_experts = cfg.num_experts = count  # the field is num_experts in Qwen2-MoE (an unused one
        cfg.num_experts_per_tok = min(cfg.num_experts_per_tok, count)  # is harmless, an alias maps in Qwen3-MoE)
        width = max(shape.get("expert_width", 1), 1)
        if getattr(cfg, "moe_intermediate_size", None):
            cfg.moe_intermediate_size = width
        else:  # Mixtral: intermediate_size is an expert's width
            cfg.intermediate_size = width
    if "shared_expert_width" in shape:  # Qwen2-MoE's shared expert (a RemovedMLP when it keeps no channel)
        cfg.shared_expert_intermediate_size = max(shape["shared_expert_width"], 1)
    return cfg


def _mlp_removed(shape: dict) -> bool:
    if "num_experts" in shape:
        return shape["num_experts"] == 0 or shape.get("expert_width", 1) == 0
    return shape["intermediate_size"] == 0


def config_head_dim(config: PreTrainedConfig) -> int:
    """The attention head dimension a config declares: ``head_dim``, else hidden_size / num_attention_heads.

    This file ships alone beside every saved model and imports nothing of strata, so it keeps its own copy of
    ``supernet.io.adapters.base.config_head_dim`` (a test holds the two equal)."""
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def build_layer(dense_layer: nn.Module, base: PreTrainedConfig, shape: dict, layer_idx: int) -> nn.Module:
    """A decoder layer of the family's own class, with the widths in ``shape``."""
    head_dim = config_head_dim(base)
    layer = type(dense_layer)(_layer_config(base, shape, head_dim), layer_idx)
    if shape["num_attention_heads"] == 0:
        layer.self_attn = RemovedAttention(layer_idx, base.hidden_size, head_dim, shape["attn_out_bias"])
    elif shape["attn_out_bias"] and layer.self_attn.o_proj.bias is None:
        layer.self_attn.o_proj.bias = nn.Parameter(torch.zeros(base.hidden_size))
    if _mlp_removed(shape):
        layer.mlp = RemovedMLP(base.hidden_size, shape["mlp_out_bias"])
    elif shape["mlp_out_bias"] and layer.mlp.down_proj.bias is None:
        layer.mlp.down_proj.bias = nn.Parameter(torch.zeros(base.hidden_size))
    if shape.get("shared_expert_width") == 0 and not _mlp_removed(shape):
        layer.mlp.shared_expert = RemovedMLP(base.hidden_size, shape["shared_out_bias"])
    elif shape.get("shared_out_bias") and layer.mlp.shared_expert.down_proj.bias is None:
        layer.mlp.shared_expert.down_proj.bias = nn.Parameter(torch.zeros(base.hidden_size))
    return layer


class StrataPreTrainedModel(PreTrainedModel):
    config_class = StrataConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _can_compile_fullgraph = True
    _supports_attention_backend = True

    def _init_weights(self, module):
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=std)
        elif isinstance(module, (RemovedAttention, RemovedMLP)) and module.bias is not None:
            nn.init.zeros_(module.bias)


class StrataForCausalLM(StrataPreTrainedModel, GenerationMixin):
    """The family's causal LM with per-layer widths; forward is the family's own."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: StrataConfig):
        super().__init__(config)
        base = config.base_config()
        self.model = MODEL_MAPPING[type(base)](base)
        for i, shape in enumerate(config.layer_shapes):
            self.model.layers[i] = build_layer(self.model.layers[i], base, shape, i)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self._family = MODEL_FOR_CAUSAL_LM_MAPPING[type(base)]
        self.post_init()

    def forward(self, *args, **kwargs):
        return self._family.forward(self, *args, **kwargs)


StrataConfig.register_for_auto_class()
StrataForCausalLM.register_for_auto_class("AutoModelForCausalLM")
