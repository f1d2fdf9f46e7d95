"""Qwen3: Llama's layout plus per-head RMSNorms on queries and keys (q_norm, k_norm).

The norms act on one head's ``head_dim`` features and are shared by all heads, so removing heads
leaves them untouched; they count as the attention module's fixed parameters.
"""

from __future__ import annotations

from supernet.io.adapters.llama import LlamaAdapter


class Qwen3Adapter(LlamaAdapter):
    model_types = ("qwen3",)
    gguf_refusal = ("its per-head q/k RMSNorm is in no llama.cpp graph that builds layers at their own widths "
                    "(deci has no q/k norm; openelm has one but no biases and no untied output)")  # fmt: skip

    def fixed_params(self, kind: str) -> int:
        return 2 * self.geometry.head_dim if kind == "attn" else 0
