"""Expert scores from routing statistics: frequency counts every top-k choice, REAP averages the gate value
times the expert's output norm over the tokens routed to it (checked against an explicit computation)."""

from __future__ import annotations

import pytest
import torch
from moe_models import EXPERTS, TOP_K, tiny_moe

from supernet.errors import UsageError
from supernet.variants.expert_criteria import RoutingAccumulator, expert_scores, frequency, reap


def test_routing_statistics_count_every_choice_and_weigh_output_norms() -> None:
    model = tiny_moe("mixtral")
    block = model.model.layers[0].mlp
    hidden = torch.randn(40, 32, generator=torch.Generator().manual_seed(6))
    acc = RoutingAccumulator(EXPERTS)
    handle = acc.attach(block.experts)
    with torch.no_grad():
        block(hidden[None])
        _, weights, chosen = block.gate(hidden)
    handle.remove()
    stats = acc.finalize()
    assert stats.count == 40 and frequency(stats).sum().item() == pytest.approx(TOP_K)
    e = int(chosen[0, 0])
    token, slot = torch.where(chosen == e)
    with torch.no_grad():
        gate, up = torch.nn.functional.linear(hidden[token], block.experts.gate_up_proj[e]).chunk(2, dim=-1)
        out = torch.nn.functional.linear(block.experts.act_fn(gate) * up, block.experts.down_proj[e])
    expected = (weights[token, slot].double() * out.double().norm(dim=-1)).mean()
    assert reap(stats)[e].item() == pytest.approx(expected.item(), rel=1e-6)


def test_an_unused_expert_scores_zero_and_an_unknown_criterion_is_refused() -> None:
    acc = RoutingAccumulator(4)
    experts = torch.nn.Module()
    experts.gate_up_proj = torch.nn.Parameter(torch.randn(4, 6, 5))
    experts.down_proj = torch.nn.Parameter(torch.randn(4, 5, 3))
    experts.act_fn = torch.nn.functional.silu
    acc.update(experts, torch.randn(6, 5), torch.tensor([[0, 1]] * 6), torch.full((6, 2), 0.5))
    stats = acc.finalize()
    assert reap(stats)[2:].tolist() == [0.0, 0.0] and frequency(stats).tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(UsageError, match="supernet.expert_criterion='random'"):
        expert_scores("random", stats)


def test_expert_channels_are_scored_on_their_gate_weighted_inputs() -> None:
    from supernet.variants.expert_criteria import channel_scores

    model = tiny_moe("mixtral")
    block = model.model.layers[0].mlp
    hidden = torch.randn(30, 32, generator=torch.Generator().manual_seed(7))
    acc = RoutingAccumulator(EXPERTS, channels=24)
    handle = acc.attach(block.experts)
    with torch.no_grad():
        block(hidden[None])
        _, weights, chosen = block.gate(hidden)
    handle.remove()
    scores = channel_scores(acc.finalize(), block.experts.down_proj)  # [E, I]
    e = int(chosen[3, 1])
    token, slot = torch.where(chosen == e)
    with torch.no_grad():
        gate, up = torch.nn.functional.linear(hidden[token], block.experts.gate_up_proj[e]).chunk(2, dim=-1)
        x = weights[token, slot, None].double() * (block.experts.act_fn(gate) * up).double()  # [|X_e|, I]
    expected = x.norm(dim=0) * block.experts.down_proj[e].double().norm(dim=0)
    torch.testing.assert_close(scores[e], expected)
