"""Proxies: ways to score a candidate allocation on a live model (lower is better)."""
