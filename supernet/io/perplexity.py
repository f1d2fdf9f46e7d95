"""Perplexity over non-overlapping token windows, each scored on its own (no sliding context).

    ppl = exp( sum_w sum_{t=1}^{T-1} -log p(x_{w,t} | x_{w,<t}) / (n * (T - 1)) )

for n windows of T tokens: the first token of each window is context only. The pruning papers'
"seq 128" (FLAP) and "seq 2048" (SparseGPT, Wanda) conventions are just the window length T.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@torch.no_grad()
def perplexity(
    model: PreTrainedModel, tokens: torch.LongTensor, *, batch_size: int = 8, progress: bool = True
) -> float:
    """exp of the token-weighted mean next-token cross entropy. tokens: [n >= 1, seq_len >= 2]."""
    assert tokens.dim() == 2 and tokens.shape[0] >= 1 and tokens.shape[1] >= 2, (
        f"tokens must be [n >= 1, seq_len >= 2], got {tuple(tokens.shape)}"
    )
    device = next(model.parameters()).device
    total_nll = torch.zeros((), dtype=torch.float64)
    total_tokens = 0
    for start in tqdm(range(0, tokens.shape[0], batch_size), desc="perplexity", disable=not progress, leave=False):
        batch = tokens[start : start + batch_size].to(device)  # [b, T]
        logits = model(input_ids=batch).logits[:, :-1]  # [b, T - 1, vocab]
        targets = batch[:, 1:]  # [b, T - 1]
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # bf16/fp16 -> fp32, fp64 stays
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
        total_nll += nll.double().cpu()
        total_tokens += targets.numel()
    return math.exp(total_nll.item() / total_tokens)
