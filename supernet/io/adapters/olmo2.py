"""OLMo 2: Llama's projections, q/k RMSNorms over the whole projection, and norms after each sub-block.

Facts (transformers 5, ``models/olmo2/modeling_olmo2.py``; OLMo Team 2024, https://arxiv.org/abs/2501.00656):

- ``q_norm`` is an RMSNorm over all heads * head_dim query features together (weight [heads * head_dim]),
  ``k_norm`` over all kv_heads * head_dim key features, applied before the heads are split:
  q_norm(q) = q / sqrt(mean_over_all_features(q^2) + eps) * w. A unit owns its rows of both weights
  (``attention_norms``), sliced with the projection rows.
- Removing heads changes what the norm divides by: the pruned model's RMS runs over the kept heads only,
  so a kept head's normalised query is the dense one times r = rms_all / rms_kept (per token). The live
  switched model and the exported one compute exactly this (in place == export to fp32 rounding); the
  change is to the approximation of the dense model; no weight change undoes it (r varies per token: a
  constant rescale of the norm weight could only take out its mean, and strata does not).
  Measured (kept_norm_shift, the mean over held-out tokens of ||q_K / rms_K - q_K / rms_all|| / ||q_K / rms_all||)
  on a small OLMo 2 trained on the built-in corpus (4 layers, 8 heads of 16, 300 AdamW steps), keeping half
  the heads of one layer: 8-10% for queries and 8-16% for keys with a random half, 8-15% with the half of
  highest query/key energy, 11-36% with the lowest-energy half. It is part of what the search's fitness
  (KL to the dense model, end to end) sees, so the allocation accounts for it; no compensation undoes it.
- ``post_attention_layernorm`` / ``post_feedforward_layernorm`` normalise each sub-block's output before
  the residual add (there is no pre-norm): a compensation bias goes through that norm, in place as exported.
"""

from __future__ import annotations

import torch

from supernet.io.adapters.base import Projection
from supernet.io.adapters.llama import LlamaAdapter


def kept_norm_shift(query: torch.Tensor, kept: torch.Tensor, eps: float) -> torch.Tensor:
    """Relative change of the normalised kept features when the RMS runs over the kept ones only.

    query: [tokens, features] the projection's output before the norm; kept: [kept features] indices.
    Dense: q_K / rms_all; pruned: q_K / rms_K; change = |rms_all / rms_K - 1| per token, which is
    ||q_K / rms_K - q_K / rms_all|| / ||q_K / rms_all|| (the norm's weight cancels). Returns [tokens].
    """
    q = query.double()
    rms_all = (q.pow(2).mean(dim=-1) + eps).sqrt()  # [tokens]
    rms_kept = (q[:, kept].pow(2).mean(dim=-1) + eps).sqrt()  # [tokens]
    return (rms_all / rms_kept - 1).abs()


class Olmo2Adapter(LlamaAdapter):
    model_types = ("olmo2",)
    attention_norms = (Projection("q_norm", "out", "query"), Projection("k_norm", "out", "kv"))
    gguf_refusal = "llama.cpp's deci graph has neither its post-norms nor its q/k norm over the whole projection"
