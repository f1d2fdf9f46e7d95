"""``hidden_covariance``: Serianni & Kalita's zero-shot metric on a layer's hidden states.

    H: [tokens, hidden] output of one decoder layer (default the last, before the final norm);
       units as variables, tokens as observations
    R = Pearson correlation matrix of H's columns, [hidden, hidden]
    l = eigenvalues of R
    score = sum_i [ log(l_i + k) + 1/(l_i + k) ],  k = 1e-5

Their metric is minus this (higher = better); strata negates it so lower is better. Each term
log(x) + 1/x is minimal at x = 1, so the score is lowest (about ``hidden``, R = I) for decorrelated
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

    from torch import nn
    from transformers import PreTrainedModel

    from supernet.variants.switch import Switcher

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
    """The negated Serianni & Kalita score of one decoder layer's output hidden states; lower is better."""

    name = "hidden_covariance"

    def __init__(self, switcher: Switcher, *, layer: int = -1) -> None:
        super().__init__(switcher)
        self.layer = layer  # decoder layer whose output is scored (Python index: -1 = the last)

    @torch.no_grad()
    def hidden_states(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> torch.Tensor:
        """The chosen layer's outputs over all batches: [tokens, hidden] (a hook, removed in ``finally``)."""
        layers = self.switcher.adapter.decoder_layers(model)
        states: list[torch.Tensor] = []

        def capture(module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> None:
            hidden = output[0] if isinstance(output, tuple) else output  # [b, T, hidden]
            states.append(hidden.reshape(-1, hidden.shape[-1]).float().cpu())  # [b * T, hidden]

        handle = layers[self.layer].register_forward_hook(capture)
        device = model_device(model)
        try:
            for batch in batches:
                model(input_ids=batch.to(device))
        finally:
            handle.remove()
        return torch.cat(states)

    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        return hidden_covariance_score(self.hidden_states(model, batches))
