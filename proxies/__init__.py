"""Proxies: ways to score a candidate allocation on a live model (lower is better).

``PROXIES`` maps a name to its class; ``make_proxy(name, switcher, **options)`` builds one and
refuses an unknown name with the list of known ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from proxies.base import Proxy, as_batches
from proxies.hidden_covariance import HiddenCovarianceProxy
from proxies.kl import KLProxy
from proxies.params import FlopsProxy, ParamsProxy
from proxies.ppl import PerplexityProxy
from proxies.trace_correlation import TraceCorrelationProxy
from supernet.errors import UsageError

if TYPE_CHECKING:
    from supernet.variants.switch import Switcher

PROXIES: dict[str, type[Proxy]] = {
    cls.name: cls
    for cls in (KLProxy, PerplexityProxy, TraceCorrelationProxy, HiddenCovarianceProxy, ParamsProxy, FlopsProxy)
}
PROXY_NAMES = tuple(PROXIES)  # proxy=NAME choices (proxies/config.py)


def proxy_class(name: str) -> type[Proxy]:
    """The proxy class called ``name``; a UsageError listing the known names otherwise."""
    if name not in PROXIES:
        raise UsageError(f"unknown proxy {name!r}: use one of {', '.join(PROXIES)}")
    return PROXIES[name]


def make_proxy(name: str, switcher: Switcher, **options: Any) -> Proxy:
    """Build proxy ``name``; ``options`` are its keyword arguments (see each class)."""
    return proxy_class(name)(switcher, **options)


__all__ = ["PROXIES", "PROXY_NAMES", "Proxy", "as_batches", "make_proxy", "proxy_class"]
