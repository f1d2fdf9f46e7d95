"""Materialise the live pruned model as a physically smaller Hugging Face model and save it."""

from supernet.export.save import materialize, save_pruned

__all__ = ["materialize", "save_pruned"]
