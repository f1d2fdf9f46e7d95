"""The teacher's side of the distillation loss, per micro-batch: live or cached.

``LiveTeacher`` runs the dense model on the micro-batch (no gradients) and compares whole distributions.
``CachedTeacher`` computes, once, each micro-batch's top-k teacher log-probabilities and their vocabulary ids
(``proxies.kl.teacher_log_probs``: the KL proxy's format, tokens x k x 8 bytes) into one safetensors file per
micro-batch, beside the windows they belong to; training then only reads them (no teacher forward per step).
A file is written atomically and checked against its windows when read, so a cache left by a killed run is
reused where complete and never used for other data.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from proxies.kl import teacher_log_probs
from search.heal.loss import kd_sum_full, kd_sum_topk
from supernet.io.files import atomic_path

if TYPE_CHECKING:
    from collections.abc import Iterable

    from transformers import PreTrainedModel

log = logging.getLogger(__name__)


def teacher_logits(teacher: PreTrainedModel, windows: torch.Tensor) -> torch.Tensor:
    """The dense model's logits [b, T, vocab] (bf16 autocast on CUDA, like the student's forward)."""
    device = next(teacher.parameters()).device
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return teacher(input_ids=windows.to(device)).logits


class LiveTeacher:
    """The dense model's forward on every micro-batch; KL over the whole vocabulary."""

    def __init__(self, teacher: PreTrainedModel, temperature: float) -> None:
        self.teacher = teacher.eval()
        self.temperature = temperature

    def kd_sum(self, micro: int, windows: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """sum_t KL(p^T || q^T) over the micro-batch's tokens. student_logits: [b, T, vocab]."""
        z = teacher_logits(self.teacher, windows).to(student_logits.device)  # [b, T, vocab]
        vocab = student_logits.shape[-1]
        return kd_sum_full(z.reshape(-1, vocab), student_logits.reshape(-1, vocab), self.temperature)


class CachedTeacher:
    """Top-k teacher log-probabilities read from ``directory`` (one file per micro-batch, built by :meth:`fill`)."""

    def __init__(self, directory: Path, *, top_k: int, temperature: float) -> None:
        self.directory = Path(directory)
        self.top_k = top_k
        self.temperature = temperature

    def path(self, micro: int) -> Path:
        return self.directory / f"micro-{micro:08d}.safetensors"

    def fill(
        self, teacher: PreTrainedModel | None, batches: Iterable[tuple[int, torch.Tensor]], *, progress: bool
    ) -> None:
        """Compute and write the files of ``batches`` ((micro-batch index, windows [b, T])) not cached yet
        (``teacher`` None: every file must be there already)."""
        missing = [(m, w) for m, w in batches if not self._holds(m, w)]
        assert teacher is not None or not missing, f"the teacher cache in {self.directory} misses {len(missing)} files"
        for micro, windows in tqdm(missing, desc="teacher cache", disable=not progress, leave=False):
            logits = teacher_logits(teacher, windows)  # [b, T, vocab]
            log_p, index = teacher_log_probs(logits.reshape(-1, logits.shape[-1]).float(), self.top_k)  # [tokens, k]
            tensors = {"windows": windows.to(torch.int32).cpu().contiguous(), "log_p": log_p.cpu().contiguous()}
            if index is not None:
                tensors["index"] = index.cpu().contiguous()
            with atomic_path(self.path(micro)) as tmp:
                save_file(tensors, str(tmp))
        if missing:
            log.info("heal: cached the teacher's top-%d log-probabilities of %d micro-batches in %s",
                     self.top_k, len(missing), self.directory)  # fmt: skip

    def _holds(self, micro: int, windows: torch.Tensor) -> bool:
        """Whether the file of ``micro`` is there for ``windows`` (its windows tensor alone is read)."""
        path = self.path(micro)
        if not path.is_file():
            return False
        with safe_open(str(path), framework="pt") as handle:
            return torch.equal(handle.get_tensor("windows"), windows.to(torch.int32).cpu())

    def _read(self, micro: int, windows: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """The cached tensors of ``micro`` when they belong to ``windows``, else None."""
        path = self.path(micro)
        if not path.is_file():
            return None
        tensors = load_file(str(path))
        return tensors if torch.equal(tensors["windows"], windows.to(torch.int32).cpu()) else None

    def kd_sum(self, micro: int, windows: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """sum_t KL(p^T || q^T) renormalised over the cached top-k. student_logits: [b, T, vocab]."""
        tensors = self._read(micro, windows)
        assert tensors is not None, f"the teacher cache has no file for micro-batch {micro} of these windows"
        device = student_logits.device
        index = tensors.get("index")
        return kd_sum_topk(tensors["log_p"].to(device), None if index is None else index.to(device),
                           student_logits.reshape(-1, student_logits.shape[-1]), self.temperature)  # fmt: skip
