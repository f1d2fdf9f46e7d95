"""``search.resample``: the evaluator redraws the early stages' windows every generation and keeps the last
stage's, so complete trials stay comparable."""

from __future__ import annotations

import torch


def test_redraw_moves_the_early_stages_and_keeps_the_last() -> None:
    from transformers import AutoModelForCausalLM, LlamaConfig

    from proxies.config import ProxyConfig
    from search.fitness import Evaluator, stage_windows
    from supernet.io.adapters import adapter_for
    from supernet.space.grids import supernet_grid
    from supernet.variants.build import build_supernet
    from supernet.variants.config import SupernetConfig
    from supernet.variants.switch import Switcher

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8)  # fmt: skip
    model, adapter = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False), adapter_for(config)
    tokens = torch.randint(0, 97, (8, 16), generator=torch.Generator().manual_seed(0))  # 8 windows of 16
    cfg = SupernetConfig(criterion="wanda_sp", compensation="bias", radius=1)
    net = build_supernet(model, adapter, tokens[:4], cfg, supernet_grid(adapter, 0.5, cfg), use_cache=False,
                         progress=False)  # fmt: skip
    stages = stage_windows(tokens, [32, 128])  # 2 windows, then all 8
    evaluator = Evaluator(model, Switcher(model, adapter), net, ProxyConfig(name="kl"), stages)
    levels = list(net.grid.target)
    last = evaluator.score(levels, 1)
    rows = {tuple(r) for r in tokens.tolist()}
    drawn = set()
    for draw in range(6):
        evaluator.redraw(draw)
        picked = torch.cat(evaluator.batches[0])
        assert picked.shape == (2, 16) and {tuple(r) for r in picked.tolist()} <= rows
        drawn.add(tuple(map(tuple, picked.tolist())))
        assert torch.equal(torch.cat(evaluator.batches[1]), tokens)  # the last stage keeps its windows
        assert evaluator.score(levels, 1) == last  # and its values: complete trials stay comparable
    assert len(drawn) > 1
    evaluator.redraw(2)
    first = evaluator.score(levels, 0)
    evaluator.redraw(3)
    evaluator.redraw(2)
    assert evaluator.score(levels, 0) == first  # a draw is a seed: the same draw, the same windows and value
