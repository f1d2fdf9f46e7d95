"""``ppl``: perplexity of the candidate on the calibration tokens (lower is better).

    ppl = exp( sum_w sum_{t=1}^{T-1} -log q(x_{w,t} | x_{w,<t}) / (n * (T - 1)) )

over the given windows (:func:`supernet.io.perplexity.perplexity`). It needs no dense cache; unlike
``kl`` it measures the candidate against the text, not against the dense model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from proxies.base import Proxy

if TYPE_CHECKING:
    from collections.abc import Sequence

    from transformers import PreTrainedModel


class PerplexityProxy(Proxy):
    """Perplexity on the batches; lower is better."""

    name = "ppl"
    standalone = True

    def score(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        from supernet.io.perplexity import perplexity

        tokens = torch.cat(list(batches))  # [n, T]
        return perplexity(model, tokens, batch_size=max(b.shape[0] for b in batches), progress=False)

    def score_standalone(self, model: PreTrainedModel, batches: Sequence[torch.Tensor]) -> float:
        """Perplexity reads the model's outputs alone: any model scores as the live one does."""
        return self.score(model, batches)
