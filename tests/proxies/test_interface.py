"""The contract every proxy meets: registry, sign, determinism, nothing left on the model."""

from __future__ import annotations

import pytest
from conftest import candidates, dense, make_switcher

from proxies import make_proxy
from proxies.config import PROXY_NAMES, ProxyConfig
from supernet.errors import UsageError


def test_unknown_proxy_lists_the_known_ones():
    with pytest.raises(UsageError, match="unknown proxy 'nope': use one of kl, ppl"):
        make_proxy("nope", None)


def test_config_refuses_unknown_name():
    with pytest.raises(UsageError, match="proxy.name='nope'"):
        ProxyConfig(name="nope")


def _scores(name: str, batches) -> list[float]:
    switcher = make_switcher(seed=0)
    proxy = make_proxy(name, switcher, **ProxyConfig(name=name, projection_rank=3).options())
    proxy.prepare(switcher.model, batches)
    out = []
    for variants in candidates():
        dense(switcher)
        switcher.apply(variants)
        out.append(proxy.score(switcher.model, batches))
    return out


@pytest.mark.parametrize("name", PROXY_NAMES)
def test_deterministic(name, batches):
    assert _scores(name, batches) == _scores(name, batches)


@pytest.mark.parametrize("name", PROXY_NAMES)
def test_leaves_no_grads_hooks_or_flags(name, switcher, batches):
    model = switcher.model
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    proxy = make_proxy(name, switcher)
    proxy.prepare(model, batches)
    switcher.apply(candidates()[0])
    proxy.score(model, batches)
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
        assert not module._backward_hooks and not getattr(module, "_backward_pre_hooks", {})
    for n, p in model.named_parameters():
        assert p.grad is None, n
        assert p.requires_grad == flags.get(n, False), n
    dense(switcher)
    for dense_params in switcher.dense_params.values():
        for weight, _bias in dense_params.values():
            assert weight.grad is None and not weight.requires_grad
