"""The healing tests' settings (tests/search/conftest.py's healed runs, tests/search/heal/, test_heal_*.py)."""

HEAL_KEYS = {"seq_len": 64, "batch_tokens": 1024, "micro_batch": 8, "lr": 1e-3}  # 16 windows a step, 2 micro-batches
# strata-heal's keys: 4 steps of 16 windows of 64 tokens, a checkpoint every 2 steps
HEAL_ARGS = ["tokens=4096", "seq_len=64", "batch_tokens=1024", "micro_batch=8", "lr=1e-3", "save_every=2",
             "eval_every=0"]  # fmt: skip
