"""Compensation of the output projection after removing units: what a variant adds to its kept weights.

W: [out, in] the dense output projection (o_proj / down_proj), X: [tokens, in] its calibration input,
K the kept input channels, R the removed ones, H = X^T X (``ChannelStats.gram``).

- ``none``: W_K as is.
- ``bias`` (FLAP, An et al. 2024, https://arxiv.org/abs/2312.11983, eq. 7): the removed channels'
  mean contribution moves into the bias, b += W[:, R] @ mean_t(X[:, R]).
- ``refit`` (least squares on the calibration inputs, as SparseGPT/ZipLM/Týr's final step):
      W_K = argmin ||X W^T - X_K V^T||^2 = (H_KK^-1 (H W^T)_K)^T,
  H_KK damped by ``damping * mean(diag H_KK)`` (SparseGPT's percdamp). With no channel kept the
  least-squares problem is empty and the variant falls back to ``bias``, its rank-0 special case.
- ``refit_intercept``: least squares with a bias term, generalising both ``bias`` and ``refit``:
      (V, c) = argmin ||X W^T - X_K V^T - 1 c^T||^2
  is solved on centred statistics, Sigma = H/n - mu mu^T (mu the mean input, n the tokens):
      V^T = Sigma_KK^-1 (Sigma W^T)_K,     c = W mu - V mu_K,
  Sigma_KK damped as H_KK is above. The fit explains the removed channels' covariance with the kept
  ones (as ``refit``) and their mean with the bias (as ``bias``); with no channel kept it is ``bias``.

Registry ``COMPENSATIONS``: name -> ``(weight, stats, kept, *, damping) -> (out_bias, out_weight)``,
where ``kept`` are the kept input channels; ``None`` means nothing to add.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from supernet.errors import check_choice
from supernet.variants.statistics import ChannelStats, damp

if TYPE_CHECKING:
    from collections.abc import Callable


Compensated = tuple[torch.Tensor | None, torch.Tensor | None]  # (out_bias [out], out_weight [out, kept])


def removed_channels(width: int, kept: torch.Tensor) -> torch.Tensor:
    """Input channels not in ``kept``, ascending, on ``kept``'s device. [width - kept]"""
    mask = torch.ones(width, dtype=torch.bool, device=kept.device)
    mask[kept] = False
    return torch.nonzero(mask).flatten()


def none(weight: torch.Tensor, stats: ChannelStats | None, kept: torch.Tensor, **_: float) -> Compensated:
    """No compensation."""
    return None, None


def flap_bias(removed_weight: torch.Tensor, removed_mean: torch.Tensor) -> torch.Tensor:
    """FLAP's bias compensation (An et al. 2024, https://arxiv.org/abs/2312.11983, eq. 8): b = W[:, R] mean(X[:, R]),
    the removed input channels' mean contribution, in float64. The one place it is computed: the ``bias``
    compensation, FLAP's installed baseline and the fine levels between two anchors (``Variant.source_units``).

    removed_weight: W[:, R] [out, |R|]; removed_mean: mean(X[:, R]) over calibration tokens [|R|] -> b [out]."""
    return removed_weight.double() @ removed_mean.to(removed_weight.device).double()  # [out, |R|] @ [|R|] -> [out]


def bias(weight: torch.Tensor, stats: ChannelStats | None, kept: torch.Tensor, **_: float) -> Compensated:
    """FLAP: b = W[:, R] @ mean(X[:, R]) (:func:`flap_bias`). weight: [out, in] -> bias [out] (None if R is empty)."""
    assert stats is not None, "bias compensation needs calibration statistics"
    removed = removed_channels(weight.shape[1], kept.to(weight.device))
    if removed.numel() == 0:
        return None, None
    return flap_bias(weight.detach()[:, removed], stats.mean.to(weight.device)[removed]), None


def least_squares(m: torch.Tensor, w: torch.Tensor, kept: torch.Tensor, damping: float) -> torch.Tensor:
    """V = (damp(M_KK)^-1 (M W^T)_K)^T, the refit of the kept columns for a second-moment matrix M (H or the
    covariance), M_KK conditioned by :func:`supernet.variants.statistics.damp` (a dead input's row of M is zero, so
    its refit column is zero whatever W holds). m: [in, in], w: [out, in], one dtype and device -> [out, |K|]."""
    kept = kept.to(m.device)
    rhs = (m @ w.T)[kept]  # ([in, in] @ [in, out])_K -> [K, out]
    m_kk, _ = damp(m[kept[:, None], kept], damping, copy=False)  # [K, K], damped in place: one K x K copy of M
    return torch.linalg.solve(m_kk, rhs).T  # [K, out] -> [out, K]


def _least_squares_refit(
    weight: torch.Tensor,
    stats: ChannelStats | None,
    kept: torch.Tensor,
    damping: float,
    dtype: torch.dtype,
    *,
    intercept: bool,
) -> Compensated:
    """The kept columns' least-squares refit on H (``intercept=False``) or on the covariance with a bias
    c = W mu - V mu_K (``intercept=True``), in ``dtype`` on the weight's device. Nothing kept: FLAP's
    bias; everything kept: nothing to add."""
    assert stats is not None and stats.gram is not None, "a refit needs the Gram matrix of the calibration inputs"
    if kept.numel() in (0, weight.shape[1]):
        return bias(weight, stats, kept) if kept.numel() == 0 else (None, None)
    w = weight.detach().to(dtype)  # [out, in]
    gram = stats.gram.to(device=w.device, dtype=dtype)  # [in, in]
    if not intercept:
        return None, least_squares(gram, w, kept, damping)
    mu = stats.mean.to(device=w.device, dtype=dtype)  # [in]
    covariance = gram / stats.count  # [in, in]; the float copy of H goes here (stats.gram itself is left alone)
    del gram
    covariance -= torch.outer(mu, mu)
    v = least_squares(covariance, w, kept, damping)
    return w @ mu - v @ mu[kept.to(w.device)], v  # c: [out], V: [out, K]


def refit(weight: torch.Tensor, stats: ChannelStats | None, kept: torch.Tensor, *, damping: float = 0.01,
          dtype: torch.dtype = torch.float64, **_: float) -> Compensated:  # fmt: skip
    """Least-squares refit W_K = (H_KK^-1 (H W^T)_K)^T with damped H_KK. -> out_weight [out, |K|]."""
    return _least_squares_refit(weight, stats, kept, damping, dtype, intercept=False)


def refit_intercept(weight: torch.Tensor, stats: ChannelStats | None, kept: torch.Tensor, *, damping: float = 0.01,
                    dtype: torch.dtype = torch.float64, **_: float) -> Compensated:  # fmt: skip
    """Least squares with an intercept on centred statistics. -> (out_bias [out], out_weight [out, |K|])."""
    return _least_squares_refit(weight, stats, kept, damping, dtype, intercept=True)


COMPENSATIONS: dict[str, Callable[..., Compensated]] = {
    "none": none,
    "bias": bias,
    "refit": refit,
    "refit_intercept": refit_intercept,
}
NEEDS_GRAM = ("refit", "refit_intercept")


def get_compensation(name: str) -> Callable[..., Compensated]:
    check_choice("supernet.compensation", name, COMPENSATIONS)
    return COMPENSATIONS[name]
