"""``eval.*``: which lm-evaluation-harness tasks a run evaluates its models on, and how (``strata-eval``'s flags)."""

from __future__ import annotations

from dataclasses import dataclass, field

from supernet.errors import UsageError


@dataclass
class EvalConfig:
    tasks: list[str] = field(default_factory=list)  # lm-eval task names (registry or include_path); [] = off
    include_path: str | None = None  # a folder of task YAMLs (local datasets), besides strata's shipped tasks
    num_fewshot: int | None = None  # examples in context; None = each task's own default (0 for most)
    limit: float | None = None  # documents per task (< 1: a fraction); None = all. For quick checks only
    batch_size: int = 16  # sequences per forward pass

    def __post_init__(self) -> None:
        if any(not isinstance(t, str) or not t.strip() for t in self.tasks):
            raise UsageError(f"eval.tasks={list(self.tasks)} holds an empty name: give task names")
        if self.num_fewshot is not None and self.num_fewshot < 0:
            raise UsageError(f"eval.num_fewshot={self.num_fewshot} must be >= 0")
        if self.limit is not None and self.limit <= 0:
            raise UsageError(f"eval.limit={self.limit} must be > 0 (a count, or a fraction below 1)")
        if self.batch_size < 1:
            raise UsageError(f"eval.batch_size={self.batch_size} must be a positive integer")
