"""Criteria: formulas against brute force, the OBS order against exhaustive greedy least squares, and
every criterion removing an all-zero unit first."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from supernet.errors import UsageError
from supernet.variants import criteria
from supernet.variants.statistics import calibrate
from supernet.variants.switch import Switcher


def stats_of(model, adapter, tokens, layer=0):
    out = {}
    calibrate(model, adapter, tokens, on_layer=lambda i, s: out.update({i: s}) or {}, gram=True, progress=False)
    return out[layer]


def test_registry_names_known_criteria():
    with pytest.raises(UsageError, match="magnitude, wanda_sp, flap, obs"):
        criteria.get_criterion("taylor")


def test_wanda_sp_and_flap_match_brute_force(tiny, calib_tokens):
    model, adapter = tiny
    stats = stats_of(model, adapter, calib_tokens)
    module = Switcher(model, adapter).dense_modules[0, "attn"]
    w = module.o_proj.weight.double()  # [32, 32]; group u owns columns [16u, 16u + 16)
    for u in range(2):
        cols = range(16 * u, 16 * u + 16)
        wanda = sum(w[i, j].abs() * stats["attn"].sq_norm[j].sqrt() for i in range(32) for j in cols)
        flap = sum(stats["attn"].var[j] * w[:, j].pow(2).sum() for j in cols)
        assert_close(criteria.wanda_sp(adapter, module, "attn", stats["attn"])[u], wanda, rtol=1e-9, atol=0)
        assert_close(criteria.flap(adapter, module, "attn", stats["attn"])[u], flap, rtol=1e-9, atol=0)


def greedy_least_squares_order(x: torch.Tensor, w: torch.Tensor) -> list[int]:
    """Brute force: repeatedly drop the column whose removal, with the rest refit exactly, hurts least."""
    alive, order = list(range(w.shape[1])), []
    target = x @ w.T  # [tokens, out]
    while alive:
        errors = []
        for j in alive:
            keep = [k for k in alive if k != j]
            if keep:
                v = torch.linalg.lstsq(x[:, keep], target).solution  # [keep, out]
                errors.append(((x[:, keep] @ v - target) ** 2).sum())
            else:
                errors.append((target**2).sum())
        j = alive[int(torch.stack(errors).argmin())]
        order.append(j)
        alive.remove(j)
    return order


def test_obs_order_equals_exhaustive_greedy_least_squares():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g, dtype=torch.float64) * torch.tensor([1.0, 0.2, 3.0, 0.5, 1.5, 0.1])
    x[:, 3] += 0.9 * x[:, 0]  # correlated inputs: a first-order criterion would get this wrong
    w = torch.randn(5, 6, generator=g, dtype=torch.float64)
    order = criteria.obs_removal_order(w, x.T @ x, unit_size=1, rounds=6)
    assert order.tolist() == greedy_least_squares_order(x, w)


def test_obs_group_cost_is_the_least_squares_increase():
    """First removal of a 2-column group costs exactly the error of refitting the other columns."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64)
    w = torch.randn(4, 6, generator=g, dtype=torch.float64)
    order = criteria.obs_removal_order(w, x.T @ x, unit_size=2, rounds=1)
    costs = []
    for u in range(3):
        keep = [k for k in range(6) if k // 2 != u]
        v = torch.linalg.lstsq(x[:, keep], x @ w.T).solution
        costs.append(((x[:, keep] @ v - x @ w.T) ** 2).sum())
    assert order[0].item() == int(torch.stack(costs).argmin())


def zero_unit(model, adapter, kind: str, unit: int) -> None:
    """Zero every weight unit ``unit`` owns in every layer (rows of q/k/v, gate/up; columns of o, down)."""
    plan = adapter.attention_plan if kind == "attn" else adapter.mlp_plan
    for layer in adapter.decoder_layers(model):
        module = adapter.attention(layer) if kind == "attn" else adapter.mlp(layer)
        for proj in plan:
            index = adapter.block_index(torch.tensor([unit]), proj.block, kind=kind)
            weight = getattr(module, proj.name).weight
            if proj.side == "out":
                weight.data[index] = 0.0
            else:
                weight.data[:, index] = 0.0


@pytest.mark.parametrize("name", list(criteria.CRITERIA))
@pytest.mark.parametrize(("kind", "unit"), [("attn", 1), ("attn", 0), ("mlp", 37)])
def test_all_zero_unit_is_removed_first(tiny, calib_tokens, name, kind, unit):
    model, adapter = tiny
    zero_unit(model, adapter, kind, unit)
    stats = stats_of(model, adapter, calib_tokens)
    module = Switcher(model, adapter).dense_modules[0, kind]
    scores = criteria.get_criterion(name)(adapter, module, kind, stats[kind], damping=0.01, rounds=4)
    assert criteria.ranking(scores)[-1].item() == unit, f"{name} keeps the all-zero {kind} unit {unit}"


def test_ranking_by_groups_puts_the_k_best_of_every_group_in_each_prefix():
    scores = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.2, 0.8, 0.7, 0.6, 0.05])  # 3 groups of 3 heads
    order = criteria.ranking(scores, groups=3)
    assert order.tolist() == [0, 5, 6, 7, 2, 3, 4, 1, 8]  # best of each group by score, then the second best, ...
    for k in range(1, 4):
        assert torch.bincount(order[: 3 * k] // 3, minlength=3).tolist() == [k] * 3
    assert torch.equal(criteria.ranking(scores), torch.argsort(scores, descending=True, stable=True))


def test_obs_solves_batches_of_large_blocks_with_several_threads() -> None:
    """Batched LU in torch's CPU build fails on 4 blocks of 512 x 512 with 2 threads (the GQA groups of a 1B
    model); the SPD solve OBS uses gives each block's own solution."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(4, 600, 512, dtype=torch.float64, generator=generator)
        a = x.transpose(1, 2) @ x  # [4, 512, 512] SPD
        b = torch.randn(4, 2048, 512, dtype=torch.float64, generator=generator).transpose(1, 2)  # [4, 512, 2048]
        solved = criteria.spd_solve(a, b)
    finally:
        torch.set_num_threads(threads)
    expected = torch.stack([torch.linalg.solve(p, q) for p, q in zip(a, b, strict=True)])
    torch.testing.assert_close(solved, expected, rtol=1e-9, atol=1e-9)
    singular = torch.zeros(2, 3, 3, dtype=torch.float64) + torch.eye(3, dtype=torch.float64)
    singular[1, 2, 2] = -1.0  # not positive definite: LU, block by block
    torch.testing.assert_close(criteria.spd_solve(singular, torch.ones(2, 3, 1, dtype=torch.float64))[1, :, 0],
                               torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))  # fmt: skip
