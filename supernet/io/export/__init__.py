"""Materialise the live pruned model as a physically smaller Hugging Face model and save it.

``materialize`` and ``save_pruned`` load on first use (PEP 562), so that importing a submodule (the
GGUF writer's settings, the removed-module classes) does not import transformers' modelling code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from supernet.io.export.save import materialize, save_pruned

__all__ = ["materialize", "save_pruned"]


def __getattr__(name: str):
    if name in __all__:
        from supernet.io.export import save

        return getattr(save, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
