"""The search: the Optuna study over per-module levels, its fitness, and the Ray workers that score candidates."""
