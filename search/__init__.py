"""Search: the Optuna study over per-module levels, and the main run."""
