from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from proxies.hidden_covariance import correlation_matrix, hidden_covariance_score


def hidden(seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(8, 8, generator=generator)
    return (torch.randn(200, 8, generator=generator) @ mix).double()  # [tokens, units], correlated units


def test_correlation_matches_numpy():
    h = hidden()
    expected = torch.from_numpy(np.corrcoef(h.double().numpy(), rowvar=False))
    torch.testing.assert_close(correlation_matrix(h), expected, rtol=1e-8, atol=1e-10)


def test_finite_and_scale_invariant():
    h = hidden()
    score = hidden_covariance_score(h)
    assert math.isfinite(score)
    assert hidden_covariance_score(1000.0 * h) == pytest.approx(score, rel=1e-9)
    per_unit = torch.linspace(0.01, 50.0, 8)
    assert hidden_covariance_score(h * per_unit + 3.0) == pytest.approx(score, rel=1e-9)


def test_closed_form_on_decorrelated_units():
    h = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])  # R = I, l = (1, 1)
    k = 1e-5
    assert hidden_covariance_score(h) == pytest.approx(2 * (math.log(1 + k) + 1 / (1 + k)), rel=1e-9)


def test_constant_units_give_no_nan():
    h = hidden()
    h[:, 3] = 7.0
    score = hidden_covariance_score(h)
    assert math.isfinite(score)
    assert score > hidden_covariance_score(hidden())  # a dead unit is penalised (eigenvalue 0)
    assert math.isfinite(hidden_covariance_score(torch.zeros(10, 4)))
