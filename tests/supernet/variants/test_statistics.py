"""Layer-wise streamed statistics equal those of hooks on a full forward pass; expected propagation."""

from __future__ import annotations

import torch
from torch.testing import assert_close

from supernet.variants.statistics import StatsAccumulator, calibrate, damp
from supernet.variants.switch import Switcher, Variant


def _capture(captured: dict, key):
    def hook(_module, args) -> None:
        captured[key] = args[0].reshape(-1, args[0].shape[-1])  # [tokens, in]

    return hook


def full_pass_inputs(model, adapter, tokens):
    """Brute force: the output projections' inputs of every layer, captured on one model forward."""
    captured, handles = {}, []
    for i, layer in enumerate(adapter.decoder_layers(model)):
        for kind in ("attn", "mlp"):
            linear = adapter.output_linear(layer, kind)
            handles.append(linear.register_forward_pre_hook(_capture(captured, (i, kind))))
    try:
        model(tokens)
    finally:
        for h in handles:
            h.remove()
    return captured


def test_accumulator_matches_closed_form():
    x = torch.randn(3, 5, 7, dtype=torch.float64)
    acc = StatsAccumulator(7, gram=True, gram_dtype=torch.float64)
    acc.update(x[:2])
    acc.update(x[2:])
    stats = acc.finalize()
    flat = x.reshape(-1, 7)
    assert stats.count == 15
    assert_close(stats.mean, flat.mean(0), rtol=1e-12, atol=1e-12)
    assert_close(stats.var, flat.var(0, unbiased=False), rtol=1e-10, atol=1e-12)
    assert_close(stats.sq_norm, flat.pow(2).sum(0), rtol=1e-12, atol=1e-12)
    assert_close(stats.gram, flat.T @ flat, rtol=1e-12, atol=1e-12)


def test_dense_stream_equals_full_forward(tiny, calib_tokens):
    model, adapter = tiny
    reference = full_pass_inputs(model, adapter, calib_tokens)
    seen = {}

    def on_layer(i, stats):
        seen.update({(i, k): s for k, s in stats.items()})
        return {}

    calibrate(model, adapter, calib_tokens, on_layer=on_layer, gram=True, batch_size=4, progress=False)
    assert set(seen) == set(reference)
    for key, x in reference.items():
        x = x.double()
        assert_close(seen[key].mean, x.mean(0), rtol=1e-5, atol=1e-6)
        assert_close(seen[key].sq_norm, x.pow(2).sum(0), rtol=1e-5, atol=1e-5)
        assert_close(seen[key].gram.double(), x.T @ x, rtol=1e-4, atol=1e-4)


def test_expected_propagation_feeds_the_target_variant(tiny, calib_tokens):
    """Layer 1's statistics under 'expected' equal those of a full pass with layer 0's variant installed."""
    model, adapter = tiny
    variant = Variant(torch.tensor([1]))  # layer 0 attention keeps GQA group 1 only
    switcher = Switcher(model, adapter)
    switcher.set(0, "attn", variant)
    reference = full_pass_inputs(model, adapter, calib_tokens)
    switcher.set(0, "attn", None)
    seen = {}

    def on_layer(i, stats):
        seen.update({(i, k): s for k, s in stats.items()})
        return {"attn": variant} if i == 0 else {}

    calibrate(model, adapter, calib_tokens, on_layer=on_layer, switcher=switcher, propagate="expected", progress=False)
    assert_close(seen[1, "attn"].mean, reference[1, "attn"].double().mean(0), rtol=1e-5, atol=1e-6)
    assert switcher.current[0, "attn"] is None, "the dense layer must be restored after propagation"
    dense = {}
    calibrate(model, adapter, calib_tokens, on_layer=lambda i, s: dense.update({i: s["attn"]}) or {}, progress=False)
    assert not torch.allclose(dense[1].mean, seen[1, "attn"].mean)


def test_hidden_states_wait_on_the_host_when_the_model_is_on_a_gpu() -> None:
    from supernet.variants.statistics import hidden_store

    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert hidden_store(cuda, None) == cpu and hidden_store(cuda, False) == cuda
    assert hidden_store(cpu, None) == cpu and hidden_store(cpu, True) == cpu


def test_damp_is_one_rule_for_dead_inputs_and_damping() -> None:
    """damp(M): M_jj <= 0 (an input never active, or a covariance's cancellation) becomes 1, then every diagonal
    entry gains damping * mean(diag M); M itself is untouched."""
    m = torch.tensor([[4.0, 1.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, -1e-12]],
                     dtype=torch.float64)  # fmt: skip
    before = m.clone()
    damped, dead = damp(m, 0.1)
    assert dead.tolist() == [False, False, True, True]
    expected = before.clone()
    expected[2, 2] = expected[3, 3] = 1.0
    expected += 0.1 * (4.0 + 2.0 + 1.0 + 1.0) / 4 * torch.eye(4, dtype=torch.float64)
    assert_close(damped, expected, rtol=0, atol=1e-15)
    assert torch.equal(m, before)


def test_dead_inputs_cost_nothing_in_obs_and_get_no_refit() -> None:
    """OBS scores on W with the dead inputs' columns zeroed; the refit gives a dead input a zero column whatever
    W holds (its row of H is zero), so both read the same rule."""
    from supernet.variants.compensation import least_squares
    from supernet.variants.criteria import damped_gram

    x = torch.randn(64, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x[:, 2] = 0.0  # input 2 never fires
    h, w = x.T @ x, torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    h_obs, w_obs = damped_gram(h, w, 0.01)
    assert_close(h_obs, damp(h, 0.01)[0], rtol=0, atol=0)
    assert torch.equal(w_obs[:, 2], torch.zeros(3, dtype=torch.float64)) and torch.equal(w_obs[:, [0, 1]], w[:, [0, 1]])
    refit = least_squares(h, w, torch.tensor([0, 2, 4]), 0.01)  # [out, 3]
    assert torch.equal(refit[:, 1], torch.zeros(3, dtype=torch.float64))
    assert refit[:, [0, 2]].abs().min() > 0
