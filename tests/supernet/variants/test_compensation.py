"""Compensation: bias and refit against closed forms; refit beats none on the calibration inputs."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from supernet.errors import UsageError
from supernet.variants.compensation import bias, get_compensation, none, refit, refit_intercept
from supernet.variants.statistics import StatsAccumulator


def stats_for(x: torch.Tensor):
    acc = StatsAccumulator(x.shape[1], gram=True, gram_dtype=torch.float64)
    acc.update(x)
    return acc.finalize()


@pytest.fixture
def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g, dtype=torch.float64) + torch.linspace(-1, 2, 8, dtype=torch.float64)
    x[:, 5] += 0.8 * x[:, 1]
    w = torch.randn(6, 8, generator=g, dtype=torch.float64)
    return x, w, torch.tensor([0, 2, 3, 6])


def test_unknown_compensation_lists_known():
    with pytest.raises(UsageError, match="none, bias, refit"):
        get_compensation("lora")


def test_bias_is_removed_columns_times_their_mean(problem):
    x, w, kept = problem
    out_bias, out_weight = bias(w, stats_for(x), kept)
    removed = [1, 4, 5, 7]
    assert out_weight is None
    assert_close(out_bias, w[:, removed] @ x[:, removed].mean(0), rtol=1e-12, atol=1e-12)
    # the mean output is preserved exactly
    assert_close((x[:, kept] @ w[:, kept].T + out_bias).mean(0), (x @ w.T).mean(0), rtol=1e-10, atol=1e-10)


def test_refit_is_the_least_squares_solution(problem):
    x, w, kept = problem
    _, out_weight = refit(w, stats_for(x), kept, damping=0.0)
    expected = torch.linalg.lstsq(x[:, kept], x @ w.T).solution.T  # [out, kept]
    assert_close(out_weight, expected, rtol=1e-8, atol=1e-8)


def test_refit_lowers_reconstruction_error_against_none(problem):
    x, w, kept = problem
    target = x @ w.T
    _, refit_weight = refit(w, stats_for(x), kept, damping=0.01)
    assert none(w, stats_for(x), kept) == (None, None)
    err_none = ((x[:, kept] @ w[:, kept].T - target) ** 2).sum()
    err_refit = ((x[:, kept] @ refit_weight.T - target) ** 2).sum()
    assert err_refit < 0.9 * err_none


def test_refit_lowers_layer_error_on_a_tiny_model(tiny, calib_tokens):
    """On the calibration inputs of a real down_proj, refit's output error is below none's."""
    from supernet.variants.statistics import calibrate

    model, adapter = tiny
    captured, out = [], {}
    linear = adapter.output_linear(adapter.decoder_layers(model)[0], "mlp")
    handle = linear.register_forward_pre_hook(lambda _m, args: captured.append(args[0].reshape(-1, 64)) and None)
    try:
        model(calib_tokens)
    finally:
        handle.remove()
    calibrate(model, adapter, calib_tokens, on_layer=lambda i, s: out.update({i: s}) or {}, gram=True, progress=False)
    x, w = captured[0].double(), linear.weight.double()
    kept = torch.arange(0, 64, 2)
    _, refit_weight = refit(w, out[0]["mlp"], kept, damping=0.01)
    err_none = ((x[:, kept] @ w[:, kept].T - x @ w.T) ** 2).sum()
    err_refit = ((x[:, kept] @ refit_weight.T - x @ w.T) ** 2).sum()
    assert err_refit < err_none


def test_refit_with_nothing_kept_falls_back_to_bias(problem):
    x, w, _ = problem
    empty = torch.tensor([], dtype=torch.long)
    out_bias, out_weight = refit(w, stats_for(x), empty)
    assert out_weight is None
    assert_close(out_bias, w @ x.mean(0))


def residual(x: torch.Tensor, w: torch.Tensor, kept: torch.Tensor, out_bias, out_weight) -> float:
    """||X W^T - (X_K V^T + c)||^2 of a compensated variant (V = W_K without refit, c = 0 without bias)."""
    v = w[:, kept] if out_weight is None else out_weight
    c = 0.0 if out_bias is None else out_bias
    return float(((x @ w.T - (x[:, kept] @ v.T + c)) ** 2).sum())


def test_refit_intercept_is_least_squares_with_a_bias_column(problem):
    x, w, kept = problem
    out_bias, out_weight = refit_intercept(w, stats_for(x), kept, damping=0.0)
    design = torch.cat([x[:, kept], torch.ones(len(x), 1, dtype=x.dtype)], dim=1)  # [tokens, K + 1]
    solution = torch.linalg.lstsq(design, x @ w.T).solution  # [K + 1, out]
    assert_close(out_weight, solution[:-1].T, rtol=1e-8, atol=1e-8)
    assert_close(out_bias, solution[-1], rtol=1e-8, atol=1e-8)


def test_refit_intercept_beats_bias_and_refit_on_the_calibration_inputs(problem):
    """Its feasible set holds both (V = W_K with FLAP's bias, and refit with c = 0), so its error is the least."""
    x, w, kept = problem
    s = stats_for(x)
    methods = (none, bias, refit, refit_intercept)
    errors = {f.__name__: residual(x, w, kept, *f(w, s, kept, damping=0.0)) for f in methods}
    assert errors["refit_intercept"] < min(errors["bias"], errors["refit"]) < errors["none"]


def test_refit_intercept_keeps_the_mean_output(problem):
    x, w, kept = problem
    out_bias, out_weight = refit_intercept(w, stats_for(x), kept, damping=0.01)
    assert_close((x[:, kept] @ out_weight.T + out_bias).mean(0), (x @ w.T).mean(0), rtol=1e-9, atol=1e-9)


def test_refit_intercept_with_nothing_kept_is_bias(problem):
    x, w, _ = problem
    empty = torch.tensor([], dtype=torch.long)
    assert_close(refit_intercept(w, stats_for(x), empty)[0], bias(w, stats_for(x), empty)[0])
