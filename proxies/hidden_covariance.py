"""``hidden_covariance``: Serianni & Kalita's zero-shot metric on a layer's hidden states.

    H: [tokens, hidden] hidden states of one layer (units as variables, tokens as observations)
    R = Pearson correlation matrix of H's columns, [hidden, hidden]
    l = eigenvalues of R
    score = sum_i [ log(l_i + k) + 1/(l_i + k) ],  k = 1e-5

Their metric is minus this (higher = better); strata negates it so lower is better. Each term
log(x) + 1/x is minimal at x = 1, so the score is lowest (= hidden * (1 + ...)) for decorrelated
units and grows as the spectrum collapses. R is invariant to scaling (and shifting) each unit, so
the score is too. A unit that is constant over the tokens (variance <= ``zero_variance_eps`` times
the largest) carries no information: its row and column of R are 0 (eigenvalue 0, the largest
penalty), never NaN.

Serianni & Kalita, "Training-free Neural Architecture Search for RNNs and Transformers", ACL 2023,
https://aclanthology.org/2023.acl-long.142/ . They report Kendall tau 0.37 on NAS-Bench-NLP RNNs, and
that parameter count beat most zero-shot metrics on BERT models: a report measures it, not assumes it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from proxies.base import Proxy, model_device

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel

    from supernet.switch import Switcher

EIGEN_SHIFT = 1e-5  # k in the formula (Serianni & Kalita)
ZERO_VARIANCE_EPS = 1e-12  # a unit whose variance is below this times the largest is constant


def correlation_matrix(hidden: torch.Tensor, *, zero_variance_eps: float = ZERO_VARIANCE_EPS) -> torch.Tensor:
    """Pearson correlation of the columns of hidden [tokens, units] -> [units, units], float64.

    Constant columns get a zero row and column (no NaN).
    """
    h = hidden.double()
    centred = h - h.mean(dim=0, keepdim=True)  # [tokens, units]
    var = centred.pow(2).mean(dim=0)  # [units]
    alive = var > zero_variance_eps * var.max().clamp_min(torch.finfo(torch.float64).tiny)
    std = torch.where(alive, var.sqrt(), torch.ones_like(var))
    z = torch.where(alive, centred / std, torch.zeros_like(centred))  # [tokens, units]
    return z.T @ z / h.shape[0]  # [units, tokens] @ [tokens, units] -> [units, units]


def hidden_covariance_score(hidden: torch.Tensor, *, k: float = EIGEN_SHIFT) -> float:
    """sum_i log(l_i + k) + 1/(l_i + k) over the eigenvalues l of the correlation of hidden [tokens, units]."""
    eigenvalues = torch.linalg.eigvalsh(correlation_matrix(hidden)).clamp_min(0.0)  # R is PSD; drop rounding
    shifted = eigenvalues + k
    return (shifted.log() + shifted.reciprocal()).sum().item()


class HiddenCovarianceProxy(Proxy):
    """The negated Serianni & Kalita score of one layer's hidden states; lower is better."""

    name = "hidden_covariance"
    needs_grad = False

    def __init__(self, switcher: Switcher, *, layer: int = -1) -> None:
        super().__init__(switcher)
        self.layer = layer  # index into output_hidden_states: 0 = embeddings, -1 = last (after the final norm)

    @torch.no_grad()
    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        device = model_device(model)
        states = []
        for batch in batches:
            out = model(input_ids=batch.to(device), output_hidden_states=True)
            hidden = out.hidden_states[self.layer]  # [b, T, hidden]
            states.append(hidden.reshape(-1, hidden.shape[-1]).float().cpu())  # [b * T, hidden]
        return hidden_covariance_score(torch.cat(states))
