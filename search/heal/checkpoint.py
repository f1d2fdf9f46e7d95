"""Resumable healing state: an atomic checkpoint of everything the next step depends on, safetensors and JSON only.

A checkpoint is a folder ``step-<K>/`` under the state directory:

- ``model.safetensors``: the trainable parameters (every weight with ``method=full``, the LoRA adapters with
  ``lora``), by their full names (a model sharded by FSDP2 is gathered first, so any number of processes reads it);
- ``optimizer.safetensors`` (AdamW's ``step``, ``exp_avg``, ``exp_avg_sq`` of each parameter, keys
  ``<name>/<field>``) and ``optimizer.json`` (its param groups, parameters by name);
- ``rng.safetensors``: torch's CPU (and CUDA) generator states;
- ``state.json``: the step reached (the data position: step K's windows are a function of K), the schedule's
  state, the loss curve and held-out evaluations so far, seconds trained, and the fingerprint of the settings.

The folder is written under a temporary name and renamed; then ``latest.json`` (written atomically) names it, and
older folders go. A kill at any moment leaves ``latest.json`` naming a complete folder, or no ``latest.json``
(no checkpoint yet); temporaries of a killed write are removed when the next run starts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from search.heal.distributed import barrier, rank_world
from search.heal.faults import fault_point
from supernet.errors import UsageError
from supernet.io.files import atomic_path, write_json

LATEST = "latest.json"


def _options(*, full: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    distributed = rank_world()[1] > 1  # a sharded model gathers its full tensors, on the CPU
    return StateDictOptions(full_state_dict=distributed, cpu_offload=distributed and full, strict=False)


def trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def model_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The trainable parameters by name, whole (gathered from the shards; {} on ranks > 0 of a torchrun)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    names = trainable_names(model)
    state = get_model_state_dict(model, options=_options(full=True))
    return {k: v.detach().cpu().contiguous() for k, v in state.items() if k in names}


def optimizer_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    """AdamW's state flattened to ``{"<name>/<field>": tensor}``, and its param groups (JSON-ready)."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, optimizer, options=_options(full=True))  # {} on ranks > 0 of a torchrun
    flat = {f"{name}/{key}": t.detach().cpu().contiguous() for name, fields in state.get("state", {}).items()
            for key, t in fields.items()}  # fmt: skip
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state.get("param_groups", [])]
    return flat, groups


def rng_tensors() -> dict[str, torch.Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        out |= {f"cuda{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return out


def save_checkpoint(state_dir: Path, step: int, model, optimizer, scheduler, record: dict[str, Any]) -> None:
    """Write checkpoint ``step`` atomically (every process gathers; rank 0 writes), then point ``latest.json`` at it
    and delete the older ones. ``record``: state.json's fields beside ``step`` and ``schedule``."""
    tensors = model_tensors(model)
    moments, groups = optimizer_tensors(model, optimizer)
    if rank_world()[0] == 0:
        name = f"step-{step:08d}"
        with atomic_path(state_dir / name, directory=True) as tmp:
            save_file(tensors, str(tmp / "model.safetensors"))
            fault_point(f"checkpoint:model:{step}")
            save_file(moments, str(tmp / "optimizer.safetensors"))
            (tmp / "optimizer.json").write_text(json.dumps({"param_groups": groups}))
            save_file(rng_tensors(), str(tmp / "rng.safetensors"))
            (tmp / "state.json").write_text(json.dumps({**record, "step": step, "schedule": scheduler.state_dict()}))
        fault_point(f"checkpoint:pointer:{step}")
        write_json(state_dir / LATEST, {"checkpoint": name, "step": step})
        for old in state_dir.glob("step-*"):
            if old.name != name:
                shutil.rmtree(old)
    barrier()


def clear_temporaries(state_dir: Path) -> None:
    """Remove what a killed write left: temporary folders and files, and folders no ``latest.json`` names."""
    pointer = _read(state_dir / LATEST)
    keep = None if pointer is None else pointer["checkpoint"]
    for path in [*state_dir.glob(".*"), *state_dir.glob("teacher/.*")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for path in state_dir.glob("step-*"):
        if path.name != keep:
            shutil.rmtree(path)


def _read(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def load_checkpoint(state_dir: Path, model, optimizer, scheduler, fingerprint: dict) -> dict | None:
    """Restore the latest checkpoint into ``model``, ``optimizer``, ``scheduler`` and torch's generators; returns
    its state.json (None when there is none). Refuses a checkpoint of other settings (``fingerprint``)."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    pointer = _read(state_dir / LATEST)
    if pointer is None:
        return None
    folder = state_dir / pointer["checkpoint"]
    record = json.loads((folder / "state.json").read_text())
    if record.get("fingerprint") != fingerprint:
        raise UsageError(f"{state_dir} holds a checkpoint of other healing settings or data: run with the settings it "
                         f"was started with, or delete {state_dir} to start over")  # fmt: skip
    set_model_state_dict(model, load_file(str(folder / "model.safetensors")), options=_options(full=False))
    moments = load_file(str(folder / "optimizer.safetensors"))
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in moments.items():
        name, _, field = key.rpartition("/")
        state.setdefault(name, {})[field] = tensor
    groups = json.loads((folder / "optimizer.json").read_text())["param_groups"]
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in groups]
    set_optimizer_state_dict(model, optimizer, {"state": state, "param_groups": groups}, options=_options(full=False))
    scheduler.load_state_dict(record["schedule"])
    rng = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(rng["cpu"])
    if torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng[f"cuda{i}"] for i in range(torch.cuda.device_count()) if f"cuda{i}" in rng])
    return record
