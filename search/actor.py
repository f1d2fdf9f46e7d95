"""What runs on a Ray worker: the evaluator an actor builds once, and the plain data it is built from.

Tensors cross processes as safetensors bytes, never pickled tensors. :class:`EvaluatorSpec` is what an
actor needs to build the driver's :class:`search.fitness.Evaluator` (model directory, fitness windows,
proxy options); :class:`SupernetState` is a supernet's cache form, sent once through the object store,
so actors never calibrate. :class:`EvaluatorActor` wraps the evaluator; the pool (search/workers.py)
drives the actors. An actor that owns several GPUs (``ray.num_gpus`` > 1) spreads its model over them with
accelerate's device map (supernet/io/placement.py), whole decoder layers per GPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch

    from proxies.config import ProxyConfig
    from search.fitness import Evaluator
    from search.heal.config import HealConfig
    from search.heal.selection import SelectionHeal
    from supernet.space.grid import LevelGrid
    from supernet.variants.build import Supernet


def tensors_to_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    from safetensors.torch import save

    return save({name: t.detach().cpu().contiguous() for name, t in tensors.items()})


def tensors_from_bytes(data: bytes) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(data)


@dataclass(frozen=True)
class SupernetState:
    """A supernet as plain data: its grid and its cache form (``Supernet.to_tensors``) as safetensors bytes.

    Rankings, FLAP fluctuation, means and compensation travel exactly as the on-disk cache holds them."""

    grid: LevelGrid
    criterion: str
    compensation: str
    tensors: bytes  # "<module stem>/<tensor name>" -> tensor

    @classmethod
    def of(cls, net: Supernet) -> SupernetState:
        flat = {f"{stem}/{name}": t for stem, tensors in net.to_tensors().items() for name, t in tensors.items()}
        return cls(net.grid, net.criterion, net.compensation, tensors_to_bytes(flat))

    def load(self) -> Supernet:
        from supernet.variants.build import Supernet

        modules: dict[str, dict[str, torch.Tensor]] = {}
        for key, tensor in tensors_from_bytes(self.tensors).items():
            stem, name = key.split("/", 1)
            modules.setdefault(stem, {})[name] = tensor
        net = Supernet(self.grid, self.criterion, self.compensation)
        net.load_tensors(modules)
        return net


class WorkerSpec(Protocol):
    """How a supernet travels to the actors, and how an actor builds its evaluator and swaps supernets."""

    def state(self, supernet: Any) -> Any: ...  # driver side: the supernet as plain data

    def build(self, state: Any) -> Any: ...  # actor side: the evaluator, once

    def use(self, evaluator: Any, state: Any) -> None: ...  # actor side: score through another supernet


def ray_gpu_ids() -> list:
    """The GPUs Ray gave this actor (``ray.num_gpus``); none outside an actor."""
    import ray

    return list(ray.get_gpu_ids()) if ray.is_initialized() else []


def actor_devices(device: str, gpu_ids: Sequence) -> list[str]:
    """The devices an actor spreads its model over: cuda:0..k-1 for the k GPUs Ray gave it (Ray sets
    CUDA_VISIBLE_DEVICES to them, so they are numbered from 0 inside the actor), else ``[device]``."""
    if len(gpu_ids) > 1:
        return [f"cuda:{i}" for i in range(len(gpu_ids))]
    return [device]


@dataclass(frozen=True)
class EvaluatorSpec:
    """Everything an actor needs to build the driver's :class:`Evaluator` (plain data)."""

    model_dir: str  # absolute; read by every actor (a shared filesystem on a cluster)
    dtype: str
    device: str  # the actor's own device: cpu, or cuda (Ray sets CUDA_VISIBLE_DEVICES to its GPUs; several: spread)
    proxy: ProxyConfig
    stage_tokens: list[int]  # search.stage_tokens, cut from the fitness windows as the driver does
    batch_size: int
    prescreen: str | None
    attn_unit: str  # supernet.attn_unit: the actor's adapter must slice attention as the driver's does
    expert_unit: str  # supernet.expert_unit: and a mixture's experts
    calib: bytes = field(repr=False)  # {"calib": [windows, seq_len] fitness token ids} as safetensors bytes
    max_memory: str | None = None  # placement.max_memory: dense weights per GPU when the actor owns several
    heal: HealConfig | None = None  # search.heal_tokens > 0: a candidate's heal before its last-stage score
    heal_windows: bytes | None = field(default=None, repr=False)  # {"windows": [n, seq_len]} its training windows
    seed: int = 0  # the heal's seed (the run's)

    def state(self, supernet: Supernet) -> SupernetState:
        return SupernetState.of(supernet)

    def build(self, state: SupernetState) -> Evaluator:
        from search.fitness import Evaluator, stage_windows
        from supernet.io.placement import load_placed
        from supernet.variants.switch import Switcher

        devices = actor_devices(self.device, ray_gpu_ids() if self.device.startswith("cuda") else [])
        model, _, adapter = load_placed(self.model_dir, devices, dtype=self.dtype, max_memory=self.max_memory,
                                        attn_unit=self.attn_unit, expert_unit=self.expert_unit)  # fmt: skip
        calib = tensors_from_bytes(self.calib)["calib"]
        return Evaluator(
            model, Switcher(model, adapter), state.load(), self.proxy, stage_windows(calib, self.stage_tokens),
            batch_size=self.batch_size, prescreen=self.prescreen, heal=self.selection_heal(),
        )  # fmt: skip

    def selection_heal(self) -> SelectionHeal | None:
        """The actor's own :class:`~search.heal.selection.SelectionHeal` (its teacher cache filled once per actor)."""
        if self.heal is None:
            return None
        from search.heal.selection import SelectionHeal

        assert self.heal_windows is not None, "a selection heal travels with its windows"
        return SelectionHeal(self.heal, tensors_from_bytes(self.heal_windows)["windows"], seed=self.seed)

    def use(self, evaluator: Evaluator, state: SupernetState) -> None:
        evaluator.use(state.load())


class EvaluatorActor:
    """One worker: an evaluator built once; each call names the supernet it must be scored on.

    The supernet comes as ``[ObjectRef]`` (a list, so Ray does not resolve it) and the evaluator is built
    at the first call: an actor Ray restarted, or one that missed a swap, builds from the current one."""

    def __init__(self, spec: WorkerSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)  # same reductions on every actor -> bit-identical fitness
        self.spec = spec
        self.evaluator: Any = None
        self.supernet_id: str | None = None

    def sync(self, supernet: list) -> None:
        import ray

        ref = supernet[0]
        if ref.hex() == self.supernet_id:
            return
        state = ray.get(ref)
        if self.evaluator is None:
            self.evaluator = self.spec.build(state)
        else:
            self.spec.use(self.evaluator, state)
        self.supernet_id = ref.hex()

    def ready(self, supernet: list) -> bool:
        """Build the evaluator now (the pool waits for every actor before the first batch)."""
        self.sync(supernet)
        return True

    def score(self, levels: list[int], stage: int, supernet: list) -> float:
        self.sync(supernet)
        return float(self.evaluator.score(levels, stage))

    def prescreen(self, levels: list[int], supernet: list) -> float:
        self.sync(supernet)
        return float(self.evaluator.prescreen(levels))
