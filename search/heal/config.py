"""HealConfig: the ``heal:`` node of a run and the keys of ``strata-heal``.

Settings follow the recovery literature (REFERENCES.md, "Recovery after pruning"): Minitron distils with forward
KL on the logits alone (``lm_weight=0``); LLM-Pruner heals with LoRA of rank 8 at lr 1e-4; ModelOpt advises a
learning rate about one fifth of the original peak.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from supernet.errors import UsageError, check_choice

METHODS = ("full", "lora")
TEACHERS = ("live", "cache")


@dataclass
class HealConfig:
    tokens: int = 0  # training tokens (steps x batch_tokens, rounded up to whole steps); 0 = off in a run;
    # strata-heal refuses <= 0
    method: str = "full"  # full: every weight trains (kept units, embeddings, norms, compensation biases) |
    # lora: peft adapters on lora_targets, merged back at the end (the model keeps its class and shapes)
    teacher: str = "live"  # live: the dense model's forward on the fly | cache: its top-k log-probabilities are
    # computed once and cached on disk (the KL proxy's format, proxies/kl.py), then only read
    top_k: int = 512  # teacher entries cached per token with teacher=cache (EvoPress: k >= 512 is about full KL)
    temperature: float = 1.0  # T of the distillation: KL(softmax(z_dense / T) || softmax(z_student / T)), times T^2
    lm_weight: float = 0.0  # loss = (1 - lm_weight) * T^2 * KL + lm_weight * CE; 1 = the plain LM loss (no teacher)
    lr: float = 1e-4  # peak AdamW learning rate (LLM-Pruner's; ModelOpt: ~1/5 of the original peak)
    warmup: float = 0.05  # share of the steps with a linear warmup from 0; cosine decay to 0 after it
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    clip: float = 1.0  # gradient clipping: max global L2 norm per step; 0 = off
    seq_len: int = 256  # tokens per training window (<= the model's positions)
    batch_tokens: int = 8192  # tokens per optimizer step (32 windows of 256); micro-batches accumulate to it
    micro_batch: int = 8  # windows per forward pass (memory); batch_tokens / seq_len must be a multiple of it
    save_every: int = 50  # optimizer steps between atomic checkpoints (and one at the end)
    eval_every: int = 20  # optimizer steps between held-out perplexity measurements; 0 = only before and after
    lora_rank: int = 8  # LoRA rank r (method=lora; LLM-Pruner: 8)
    lora_alpha: int = 16  # LoRA scale alpha (the update is alpha / r * B A)
    lora_targets: list[str] = field(default_factory=lambda: ["all-linear"])  # modules that get adapters: peft's
    # target_modules (projection names such as q_proj, or all-linear: every linear layer but the LM head)

    def __post_init__(self) -> None:
        check_choice("heal.method", self.method, METHODS)
        check_choice("heal.teacher", self.teacher, TEACHERS)
        if self.tokens < 0:
            raise UsageError(f"heal.tokens={self.tokens} must be >= 0 (0 = no healing)")
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise UsageError(f"heal.{name}={getattr(self, name)} must be > 0")
        if not 0.0 <= self.lm_weight <= 1.0:
            raise UsageError(f"heal.lm_weight={self.lm_weight} must be in [0, 1] (0 = distillation only, 1 = LM loss)")
        if not 0.0 <= self.warmup < 1.0:
            raise UsageError(f"heal.warmup={self.warmup} is the share of steps spent warming up: use 0 <= warmup < 1")
        for name in ("weight_decay", "clip", "eval_every"):
            if getattr(self, name) < 0:
                raise UsageError(f"heal.{name}={getattr(self, name)} must be >= 0")
        for name in ("top_k", "micro_batch", "save_every", "lora_rank", "lora_alpha"):
            if getattr(self, name) < 1:
                raise UsageError(f"heal.{name}={getattr(self, name)} must be a positive integer")
        if self.seq_len < 2:
            raise UsageError(f"heal.seq_len={self.seq_len} must be >= 2 (a window predicts its next tokens)")
        self.check_batch()
        if not self.lora_targets:
            raise UsageError("heal.lora_targets=[] names no module: give projection names, or [all-linear]")

    def check_batch(self, world: int = 1) -> None:
        """Refuse a batch that is no whole number of micro-batches on each of ``world`` processes."""
        windows = self.batch_tokens // self.seq_len
        if windows < 1 or windows % (self.micro_batch * world):
            raise UsageError(
                f"heal.batch_tokens={self.batch_tokens} gives {windows} windows of heal.seq_len={self.seq_len}, no "
                f"multiple of heal.micro_batch={self.micro_batch} x {world} processes: use batch_tokens = "
                f"{self.micro_batch * world * self.seq_len} x n"
            )

    @property
    def step_windows(self) -> int:
        """Windows per optimizer step (over all processes)."""
        return self.batch_tokens // self.seq_len

    @property
    def steps(self) -> int:
        """Optimizer steps that cover ``tokens`` (rounded up to whole steps)."""
        return -(-self.tokens // (self.step_windows * self.seq_len))

    @property
    def uses_teacher(self) -> bool:
        """Whether the loss has a distillation term (``lm_weight < 1``)."""
        return self.lm_weight < 1.0
