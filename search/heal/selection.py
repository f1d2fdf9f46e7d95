"""Training-aware selection (``search.heal_tokens``): a candidate of the last selection stage is healed, then scored.

DarwinLM (arXiv 2502.07780) selects with training in the loop: offspring are trained briefly before selection, so
the search prefers structures that recover well, not only structures that lose little before any training. Here,
with ``search.heal_tokens = N > 0``, every candidate scored on the last stage (survivors, warm starts, the proposals
of Optuna's samplers) is

1. materialised from the live model at its exact shapes (``supernet.io.export.save.materialize``) and copied, so
   the supernet and the live model stay untouched;
2. trained for N tokens toward the dense model with the run's ``heal`` settings (``search.heal.train.heal_model``:
   forward KL on the logits, ``heal.method``, ...) at ``search.heal_lr`` (default ``heal.lr``), in steps of
   ``search.heal_batch_tokens``, on
   train windows apart from the calibration and the fitness windows (search/app/inputs.py), the same windows and
   seed for every candidate; the teacher is the dense model's top-``heal.top_k`` log-probabilities, computed once
   (:meth:`SelectionHeal.prepare`) and read by every candidate;
3. scored by the fitness proxy on the last stage's windows (``Proxy.score_standalone``: ``kl`` after healing).

The healed copy is then dropped: the winner is materialised unhealed into ``model/`` as without this setting
(``heal.tokens`` heals it afterwards). Cost per candidate: N tokens of training (a forward and a backward) on top
of the score.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from search.heal.train import fill_teacher_cache, heal_model
from supernet.errors import UsageError
from supernet.io.export.save import materialize

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from search.heal.config import HealConfig

NEVER = 1 << 30  # save_every of a selection heal: no checkpoints (a candidate's heal is short and repeatable)


def selection_config(
    heal: HealConfig, *, tokens: int, batch_tokens: int, seq_len: int, lr: float | None = None
) -> HealConfig:
    """The run's ``heal`` settings for a candidate's short heal: ``tokens`` in steps of ``batch_tokens`` on
    windows of ``seq_len`` at peak rate ``lr`` (None: ``heal.lr``), the cached teacher, no periodic evaluation, no
    checkpoints. Micro-batches of ``heal.micro_batch`` windows, or one step's windows when a step holds fewer."""
    windows = batch_tokens // seq_len
    if windows < 1:
        raise UsageError(f"search.heal_batch_tokens={batch_tokens} is under one window of data.seq_len={seq_len}")
    micro = min(heal.micro_batch, windows)
    if windows % micro:
        raise UsageError(
            f"search.heal_batch_tokens={batch_tokens} gives {windows} windows of data.seq_len={seq_len}, no multiple "
            f"of heal.micro_batch={heal.micro_batch}: use search.heal_batch_tokens = {micro * seq_len} x n"
        )
    return dataclasses.replace(heal, tokens=tokens, seq_len=seq_len, batch_tokens=windows * seq_len, micro_batch=micro,
                               lr=heal.lr if lr is None else lr, teacher="cache", eval_every=0,
                               save_every=NEVER)  # fmt: skip


class SelectionHeal:
    """Heals materialised copies of candidates for the last selection stage (module docstring)."""

    def __init__(self, cfg: HealConfig, windows: torch.Tensor, *, seed: int) -> None:
        assert windows.dim() == 2 and windows.shape[1] == cfg.seq_len, f"windows {tuple(windows.shape)}"
        self.cfg = cfg
        self.windows = windows  # [n, seq_len] train windows apart from calibration and fitness
        self.seed = seed
        self.directory = Path(tempfile.mkdtemp(prefix="strata-selection-heal-"))  # the teacher cache
        self.finalizer = weakref.finalize(self, shutil.rmtree, self.directory, True)  # gone with the object

    def prepare(self, dense: PreTrainedModel) -> None:
        """Cache the dense model's top-k log-probabilities on every micro-batch a heal trains on (once)."""
        if self.cfg.uses_teacher:
            fill_teacher_cache(dense, self.windows, self.cfg, self.directory, progress=False)

    def healed_copy(self, model: PreTrainedModel, shapes: list[dict]) -> PreTrainedModel:
        """A standalone copy of the live ``model`` (a candidate installed, ``Switcher.shapes()`` its widths),
        trained for ``cfg.tokens`` tokens."""
        student = materialize(model, shapes, own=True)  # its own tensors: training leaves the live model alone
        heal_model(student, None, self.windows, self.cfg, seed=self.seed, teacher_cache=self.directory,
                   progress=False)  # fmt: skip
        return student

    def close(self) -> None:
        """Remove the teacher cache."""
        self.finalizer()
