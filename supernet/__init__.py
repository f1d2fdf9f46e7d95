"""Supernet: per-module unit rankings, variants at many levels, in-place switching and export."""
