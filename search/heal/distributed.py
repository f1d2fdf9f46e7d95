"""Training on several processes: torch FSDP2 (``torch.distributed.fsdp.fully_shard``), launched by torchrun.

Why FSDP2 and not Ray Train: it is torch's own data-parallel and sharded engine, with no dependency beyond torch;
torchrun is what SLURM (``srun torchrun``) and every cluster scheduler already start, on one machine or many;
each decoder layer's parameters, gradients and AdamW moments are sharded over the processes, so a model bigger
than one device trains; and the same full-state checkpoint (``torch.distributed.checkpoint.state_dict``) is read
back on any number of processes. Ray Train would start the same torch process group through Ray actors (its
TorchTrainer), one more layer for no capability the search's Ray pool needs to share.

Data parallelism: every process runs the same step on its own micro-batches (micro-batch m of a step goes to
rank m mod world); FSDP2 averages the gradients over the processes, so each scales its loss by world (train.py).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

WORLD_ENV = "WORLD_SIZE"  # set by torchrun (and srun with torchrun) for every process


def init_from_env(device: str) -> tuple[int, int]:
    """Join the process group torchrun describes (``$WORLD_SIZE`` > 1; gloo on CPU, nccl on CUDA, the GPU
    ``$LOCAL_RANK``); returns (rank, world), (0, 1) for a single process."""
    if int(os.environ.get(WORLD_ENV, "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def rank_world() -> tuple[int, int]:
    """(rank, world) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def decoder_blocks(model: nn.Module) -> list[nn.Module]:
    """The decoder layers: the ModuleList of ``config.num_hidden_layers`` modules (no family's attribute names)."""
    count = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return list(module)
    raise AssertionError(f"no ModuleList of {count} decoder layers in {type(model).__name__}")


def shard(model: nn.Module) -> nn.Module:
    """FSDP2 in place: each decoder layer one sharded unit, the rest (embeddings, head, final norm) the root's."""
    from torch.distributed.fsdp import fully_shard

    for block in decoder_blocks(model):
        fully_shard(block)
    fully_shard(model)
    return model


def all_sum(value: float) -> float:
    """``value`` summed over the processes (itself without a process group)."""
    if rank_world()[1] == 1:
        return value
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item())


def barrier() -> None:
    """Wait for every process (nothing without a process group)."""
    if rank_world()[1] > 1:
        dist.barrier()
