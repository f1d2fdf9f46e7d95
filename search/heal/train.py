"""``heal_model``: train a pruned model in place toward the dense model (search/heal/loss.py), resumably.

nanoGPT's loop, with the recovery literature's settings (REFERENCES.md): AdamW; the learning rate warms up
linearly over ``warmup`` of the steps, then decays along a cosine to 0 (transformers'
``get_cosine_schedule_with_warmup``); gradients of ``batch_tokens / (micro_batch x seq_len)`` micro-batches
accumulate into one step, clipped to a global L2 norm of ``clip``; forwards run under bf16 autocast on CUDA only
(CPU training stays float32, so a resumed run is bitwise the uninterrupted one). Step k trains on windows
[k x S, (k + 1) x S) of ``windows`` (S = batch_tokens / seq_len), so the data position is the step.

``method=lora`` trains peft LoRA adapters (rank, alpha, targets from HealConfig; no dropout) and merges them back
at the end, so the student keeps its class and shapes. Under torchrun (search/heal/distributed.py) a copy of the
student is sharded by FSDP2 and trained, and its full weights are loaded back into the student at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from search.heal.checkpoint import clear_temporaries, load_checkpoint, save_checkpoint
from search.heal.distributed import all_sum, barrier, rank_world, shard
from search.heal.faults import fault_point
from search.heal.loss import ce_sum
from search.heal.teacher import CachedTeacher, LiveTeacher
from supernet.io.perplexity import perplexity

if TYPE_CHECKING:
    from transformers import PreTrainedModel

    from search.heal.config import HealConfig

log = logging.getLogger(__name__)

UNTRACKED = ("save_every", "eval_every")  # settings that do not change the trained weights


@dataclass
class HealResult:
    tokens: int  # tokens trained on (steps x batch_tokens)
    steps: int  # optimizer steps
    seconds: float  # training time (held-out evaluations left out), resumed runs' earlier parts included
    curve: list[dict] = field(default_factory=list)  # per optimizer step: {"step", "tokens", "loss", "lr"}
    evals: list[dict] = field(default_factory=list)  # held-out: {"step", "tokens", "ppl"}


def trainee_of(student: PreTrainedModel, cfg: HealConfig) -> torch.nn.Module:
    """What trains: the student itself (``full``, every parameter), or the student with peft LoRA adapters."""
    if cfg.method == "full":
        return student.requires_grad_(True)
    from peft import LoraConfig, get_peft_model

    targets = "all-linear" if list(cfg.lora_targets) == ["all-linear"] else list(cfg.lora_targets)
    lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules=targets)
    return get_peft_model(student, lora)


def digest(tensors) -> str:
    """sha256 of the tensors' bytes, in order."""
    sha = hashlib.sha256()
    for tensor in tensors:
        sha.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return sha.hexdigest()


def fingerprint(cfg: HealConfig, seed: int, windows: torch.Tensor, student: torch.nn.Module) -> dict:
    """What a checkpoint must share with the run resuming it: the settings that shape training, the seed, the data
    and the student's starting weights (a LoRA checkpoint holds only the adapters)."""
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in UNTRACKED}
    start = {"windows": digest([windows.to(torch.int64)]), "student": digest(student.state_dict().values())}
    return json.loads(json.dumps({"settings": settings, "seed": seed, **start}))


def micro_batches(windows: torch.Tensor, cfg: HealConfig, step: int) -> list[tuple[int, torch.Tensor]]:
    """This process's (micro-batch index, windows [micro_batch, seq_len]) of optimizer step ``step`` (0-based):
    micro-batch m of the step goes to rank m mod world; windows wrap around when there are too few."""
    rank, world = rank_world()
    per, count = cfg.micro_batch, cfg.step_windows // cfg.micro_batch
    out = []
    for m in range(rank, count, world):
        micro = step * count + m
        rows = torch.arange(micro * per, (micro + 1) * per) % len(windows)
        out.append((micro, windows[rows]))
    return out


def train_step(trainee, teacher, batches, cfg: HealConfig, device: torch.device) -> float:
    """Accumulate one step's gradients; returns its loss (the mean over the step's tokens, every process's)."""
    world = rank_world()[1]
    kd_scale = (1.0 - cfg.lm_weight) * cfg.temperature**2 / (cfg.step_windows * cfg.seq_len)
    ce_scale = cfg.lm_weight / (cfg.step_windows * (cfg.seq_len - 1))
    total = 0.0
    for micro, windows in batches:
        windows = windows.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = trainee(input_ids=windows).logits  # [b, T, vocab]
        loss = torch.zeros((), device=device)
        if cfg.uses_teacher:
            loss = loss + kd_scale * teacher.kd_sum(micro, windows, logits)
        if cfg.lm_weight > 0:
            loss = loss + ce_scale * ce_sum(logits, windows)
        (loss * world).backward()  # FSDP2 averages gradients over the processes; the step's loss is their sum
        total += float(loss.detach())
    return all_sum(total)


def held_out_ppl(trainee, eval_windows: torch.Tensor, cfg: HealConfig) -> float:
    trainee.eval()
    try:
        return perplexity(trainee, eval_windows, batch_size=cfg.micro_batch, progress=False)
    finally:
        trainee.train()


def fill_teacher_cache(teacher, windows, cfg: HealConfig, cache_dir: Path, *, progress: bool) -> CachedTeacher:
    """The top-k teacher cache of every micro-batch ``cfg.steps`` steps over ``windows`` train on, in ``cache_dir``
    (files already there for the same windows are kept). ``teacher`` may be None when the cache is complete."""
    cached = CachedTeacher(cache_dir, top_k=cfg.top_k, temperature=cfg.temperature)
    batches = [b for step in range(cfg.steps) for b in micro_batches(windows, cfg, step)]
    cached.fill(teacher, batches, progress=progress)
    return cached


def teacher_side(teacher, windows, cfg: HealConfig, cache_dir: Path, progress: bool):
    """The loss's teacher: None (``lm_weight=1``), the live dense model, or its top-k cache (filled first; a cache
    :func:`fill_teacher_cache` completed beforehand needs no teacher model)."""
    if not cfg.uses_teacher:
        return None
    if cfg.teacher == "live":
        assert teacher is not None, "heal: a distillation loss (lm_weight < 1) needs the dense model as teacher"
        return LiveTeacher(teacher, cfg.temperature)
    return fill_teacher_cache(teacher, windows, cfg, cache_dir, progress=progress)


def unwrap(wrapped, trainee, cfg: HealConfig) -> None:
    """Bring the trained weights home: from the FSDP2 copy (``trainee``) into ``wrapped`` (the student, or the
    student with its adapters), then the adapters merged into the student's weights."""
    if trainee is not wrapped:  # a sharded copy: every process gathers the full tensors
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(trainee, options=StateDictOptions(full_state_dict=True))
        device = next(wrapped.parameters()).device
        wrapped.load_state_dict({k: v.to(device) for k, v in full.items()}, strict=False)
    if cfg.method == "lora":
        wrapped.merge_and_unload()


def optimizer_for(trainee: torch.nn.Module, cfg: HealConfig):
    """AdamW over the trainable parameters, and its schedule: linear warmup from 0 over ``warmup`` of the steps,
    then a cosine to 0 at the last step (``transformers.get_cosine_schedule_with_warmup``)."""
    from transformers import get_cosine_schedule_with_warmup

    params = [p for p in trainee.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return optimizer, get_cosine_schedule_with_warmup(optimizer, round(cfg.warmup * cfg.steps), cfg.steps)


def resume(state_dir: Path, trainee, optimizer, scheduler, start: dict) -> dict | None:
    """Clear what a killed write left in ``state_dir`` and restore its latest checkpoint (its record, or None)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if rank_world()[0] == 0:
        clear_temporaries(state_dir)
    barrier()
    return load_checkpoint(state_dir, trainee, optimizer, scheduler, start)


def heal_model(
    student: PreTrainedModel,
    teacher: PreTrainedModel | None,
    windows: torch.Tensor,
    cfg: HealConfig,
    *,
    seed: int,
    state_dir: Path | None = None,
    eval_windows: torch.Tensor | None = None,
    teacher_cache: Path | None = None,
    progress: bool = True,
) -> HealResult:
    """Train ``student`` (a materialised pruned model: ``supernet.io.export.save.materialize``'s output, or one
    loaded from a run's ``model/``) in place toward ``teacher`` (the dense model; None when ``lm_weight == 1``)
    on ``windows`` [N, seq_len] (train split only) for ``cfg.steps`` steps. LoRA is merged back before returning,
    so the student keeps its class and shapes. ``state_dir``: where resumable checkpoints (and the teacher cache)
    go; None = no checkpoints. ``eval_windows``: held-out windows whose perplexity is measured before, every
    ``cfg.eval_every`` steps and after. ``teacher_cache``: where the cached teacher's files are (``teacher=cache``;
    default ``state_dir/teacher``, or a scratch folder): one filled by :func:`fill_teacher_cache` is only read."""
    assert windows.dim() == 2 and windows.shape[1] == cfg.seq_len, (
        f"windows must be [N, heal.seq_len={cfg.seq_len}], got {tuple(windows.shape)}"
    )
    cfg.check_batch(rank_world()[1])
    torch.manual_seed(seed)
    device = next(student.parameters()).device
    start = fingerprint(cfg, seed, windows, student) if state_dir is not None else None
    wrapped = trainee_of(student, cfg)
    trainee = wrapped if rank_world()[1] == 1 else shard(copy.deepcopy(wrapped))
    optimizer, scheduler = optimizer_for(trainee.train(), cfg)
    with tempfile.TemporaryDirectory(prefix="strata-heal-") as scratch:
        state_dir = None if state_dir is None else Path(state_dir)
        cache_dir = (state_dir if state_dir is not None else Path(scratch)) / "teacher"
        cache_dir = cache_dir if teacher_cache is None else Path(teacher_cache)
        record = {"fingerprint": start, "curve": [], "evals": [], "seconds": 0.0, "step": 0}
        if state_dir is not None:
            record = resume(state_dir, trainee, optimizer, scheduler, start) or record
        side = teacher_side(teacher, windows, cfg, cache_dir, progress)
        run = Loop(trainee, side, windows, cfg, device=device, eval_windows=eval_windows, state_dir=state_dir)
        record = run.train(optimizer, scheduler, record, progress=progress)
    unwrap(wrapped, trainee, cfg)
    student.requires_grad_(False).eval()
    return HealResult(tokens=cfg.steps * cfg.batch_tokens, steps=cfg.steps, seconds=round(record["seconds"], 3),
                      curve=record["curve"], evals=record["evals"])  # fmt: skip


@dataclass
class Loop:
    """The optimizer steps from a record's step to ``cfg.steps``, with evaluations and checkpoints."""

    trainee: torch.nn.Module
    teacher: LiveTeacher | CachedTeacher | None
    windows: torch.Tensor
    cfg: HealConfig
    device: torch.device
    eval_windows: torch.Tensor | None
    state_dir: Path | None

    def evaluate(self, record: dict, step: int) -> float:
        """Measure the held-out perplexity into ``record``; returns the seconds it took (not training time)."""
        began = time.perf_counter()
        if self.eval_windows is not None:
            ppl = held_out_ppl(self.trainee, self.eval_windows, self.cfg)
            record["evals"].append({"step": step, "tokens": step * self.cfg.batch_tokens, "ppl": ppl})
        return time.perf_counter() - began

    def train(self, optimizer, scheduler, record: dict, *, progress: bool) -> dict:
        cfg, start, began = self.cfg, record["step"], time.perf_counter()
        if start == 0:
            began += self.evaluate(record, 0)
        params = [p for p in self.trainee.parameters() if p.requires_grad]
        bar = tqdm(total=cfg.steps, initial=start, desc="heal", unit="step", disable=not progress or rank_world()[0])
        for step in range(start + 1, cfg.steps + 1):
            lr = scheduler.get_last_lr()[0]
            loss = train_step(self.trainee, self.teacher, micro_batches(self.windows, cfg, step - 1), cfg, self.device)
            if cfg.clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            record["curve"].append({"step": step, "tokens": step * cfg.batch_tokens, "loss": loss, "lr": lr})
            fault_point(f"step:{step}")
            if step == cfg.steps or (cfg.eval_every and step % cfg.eval_every == 0):
                began += self.evaluate(record, step)  # training time leaves the evaluations out
            elapsed = time.perf_counter() - began
            record["step"], seconds = step, record["seconds"] + elapsed
            bar.set_postfix(loss=f"{loss:.4f}", tokens_per_s=f"{(step - start) * cfg.batch_tokens / elapsed:,.0f}")
            bar.update()
            if self.state_dir is not None and (step % cfg.save_every == 0 or step == cfg.steps):
                snapshot = {**record, "seconds": seconds}
                save_checkpoint(self.state_dir, step, self.trainee, optimizer, scheduler, snapshot)
        bar.close()
        record["seconds"] += time.perf_counter() - began
        return record
