"""Registry of architecture adapters, one per model family (``config.model_type`` -> adapter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from supernet.errors import UsageError, check_choice
from supernet.io.adapters.base import DecoderAdapter, Geometry, Projection
from supernet.io.adapters.gemma2 import Gemma2Adapter
from supernet.io.adapters.gemma3 import Gemma3TextAdapter
from supernet.io.adapters.granite import GraniteAdapter
from supernet.io.adapters.llama import LlamaAdapter
from supernet.io.adapters.mistral import MistralAdapter
from supernet.io.adapters.moe import EXPERT_UNITS, MixtralAdapter, Qwen2MoeAdapter, Qwen3MoeAdapter
from supernet.io.adapters.olmo2 import Olmo2Adapter
from supernet.io.adapters.phi3 import Phi3Adapter
from supernet.io.adapters.qwen2 import Qwen2Adapter
from supernet.io.adapters.qwen3 import Qwen3Adapter

if TYPE_CHECKING:
    from transformers import PreTrainedConfig

ADAPTERS: dict[str, type[DecoderAdapter]] = {
    model_type: cls
    for cls in (
        LlamaAdapter,
        MistralAdapter,
        Qwen2Adapter,
        Qwen3Adapter,
        Gemma2Adapter,
        Gemma3TextAdapter,
        Phi3Adapter,
        Olmo2Adapter,
        GraniteAdapter,
        Qwen3MoeAdapter,
        Qwen2MoeAdapter,
        MixtralAdapter,
    )  # fmt: skip
    for model_type in cls.model_types
}


def adapter_for(config: PreTrainedConfig, *, attn_unit: str = "group", expert_unit: str = "expert") -> DecoderAdapter:
    """The adapter of ``config.model_type`` (attention units: ``group`` or ``head``; a mixture's MLP units:
    ``expert`` (whole experts) or ``channel`` (of every expert)); a one-line UsageError for any other family."""
    check_choice("supernet.expert_unit", expert_unit, EXPERT_UNITS)
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise UsageError(
            f"unsupported architecture {model_type!r}: strata prunes {', '.join(sorted(ADAPTERS))} "
            "(add an adapter under supernet/io/adapters/ for another family)"
        )
    cls = ADAPTERS[model_type]
    return cls(config, attn_unit=attn_unit, expert_unit=expert_unit) if cls.moe else cls(config, attn_unit=attn_unit)


__all__ = ["ADAPTERS", "DecoderAdapter", "Geometry", "Projection", "adapter_for"]
