"""Materialise the live pruned model as a physically smaller Hugging Face model and save it.

``materialize``, ``save_pruned``, ``save_strata_model`` and ``load_pruned`` load on first use (PEP 562), so that
importing a submodule (the GGUF writer's settings, the removed-module classes) does not import transformers'
modelling code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supernet.io.export.load import load_pruned
    from supernet.io.export.save import materialize, save_pruned, save_strata_model

__all__ = ["load_pruned", "materialize", "save_pruned", "save_strata_model"]
_MODULES = {"load_pruned": "load"}  # the rest live in save


def __getattr__(name: str):
    if name in __all__:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_MODULES.get(name, 'save')}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
