"""The run's typed config, and the one place that registers every config node with Hydra."""

from __future__ import annotations

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore

from proxies import proxy_class
from proxies.config import PROXY_NAMES, ProxyConfig, _check_name
from search.driver import SAMPLERS, SearchConfig
from search.evaluate.config import EvalConfig
from search.heal.config import HealConfig
from search.heal.selection import selection_config
from search.workers import RayConfig
from supernet.errors import UsageError, check_choice
from supernet.io.data import DataConfig, resolve_data_source
from supernet.io.export.gguf import GGUF_DTYPES
from supernet.io.loading import ModelConfig, check_device
from supernet.io.placement import PlacementConfig
from supernet.space.allocators import ALLOCATORS
from supernet.space.budget import BudgetConfig
from supernet.variants.config import SupernetConfig

SEED_LIMIT = 2**32  # seeds are 0 <= seed < 2**32: what numpy's RandomState and Optuna's samplers (tpe, cmaes, nsga2,
# nsga3, random) accept; torch.manual_seed takes up to 2**64 - 1, numpy.random.default_rng no negative seed


def check_seed(key: str, seed: int) -> None:
    """Refuse a seed outside ``[0, 2**32)``, which every generator the run seeds accepts."""
    if not 0 <= seed < SEED_LIMIT:
        raise UsageError(
            f"{key}={seed} is outside [0, 2**32): numpy's and Optuna's generators take no other seed; "
            f"use 0 <= {key} <= {SEED_LIMIT - 1}"
        )


@dataclass
class ExportConfig:
    gguf: bool = False  # also write model.gguf beside model/ (llama.cpp's deci graph; what strata-export writes)
    gguf_dtype: str = "f32"  # tensor type of model.gguf: f32 (exact) | f16 | q8_0

    def __post_init__(self) -> None:
        check_choice("export.gguf_dtype", self.gguf_dtype, GGUF_DTYPES)


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    proxy: ProxyConfig = field(default_factory=ProxyConfig)  # fitness of the search: proxy=kl|ppl|...
    search: SearchConfig = field(default_factory=SearchConfig)  # search=none|evo|tpe|cmaes|nsga2|random
    ray: RayConfig = field(default_factory=RayConfig)  # Ray actors scoring candidates (search.workers > 1)
    export: ExportConfig = field(default_factory=ExportConfig)  # formats written besides model/
    heal: HealConfig = field(default_factory=HealConfig)  # heal.tokens > 0: heal model/ at the end (strata-heal)
    eval: EvalConfig = field(default_factory=EvalConfig)  # lm-eval tasks on every model after the outputs; [] = off
    allocator: str = "uniform"  # the allocation without search (search=none), and the search's first baseline
    seed: int = 0  # seeds data sampling and every random choice of the run; 0 <= seed < 2**32
    device: str = "cpu"  # torch device of the model: cpu | cuda | cuda:N
    placement: PlacementConfig = field(default_factory=PlacementConfig)  # a model bigger than one device: spread it
    progress: bool = True  # progress bars on long stages
    overwrite: bool = False  # a run directory holding a finished run is refused; true replaces its outputs

    def __post_init__(self) -> None:
        resolve_data_source(self.model.path, self.data)
        check_device(self.device)
        check_choice("allocator", self.allocator, ALLOCATORS)
        check_seed("seed", self.seed)
        check_selection_heal(self)


def check_selection_heal(cfg: RunConfig) -> None:
    """``search.heal_tokens > 0`` needs a search and a proxy that can score a healed copy (kl, ppl)."""
    if cfg.search.heal_tokens == 0:
        return
    if cfg.search.sampler == "none":
        raise UsageError(f"search.heal_tokens={cfg.search.heal_tokens} heals candidates of a search: use search=evo")
    if not proxy_class(cfg.proxy.name).standalone:
        usable = "|".join(name for name in PROXY_NAMES if proxy_class(name).standalone)
        raise UsageError(
            f"search.heal_tokens scores healed copies, which proxy={cfg.proxy.name} cannot score: use proxy={usable}"
        )
    # refuses a step that is no whole number of micro-batches, before any work
    selection_heal_config(cfg)


def selection_heal_config(cfg: RunConfig) -> HealConfig | None:
    """The heal settings of training-aware selection (``search.heal_tokens > 0``), or None."""
    if cfg.search.heal_tokens == 0:
        return None
    scfg = cfg.search
    return selection_config(cfg.heal, tokens=scfg.heal_tokens, batch_tokens=scfg.heal_batch_tokens,
                            seq_len=cfg.data.seq_len, lr=scfg.heal_lr)  # fmt: skip


def register_configs() -> None:
    """Register the schema every preset under ``conf/`` is checked against."""
    cs = ConfigStore.instance()
    cs.store(name="strata_schema", node=RunConfig)
    cs.store(name="proxies_schema", node=ProxyReportConfig)  # conf/proxies.yaml, the strata-proxies app
    for name in SAMPLERS:  # search=NAME picks the sampler (none = the allocator alone)
        cs.store(group="search", name=name, node=SearchConfig(sampler=name))
    for name in PROXY_NAMES:  # proxy=NAME selects the proxy that scores candidates
        cs.store(group="proxy", name=name, node=ProxyConfig(name=name))


@dataclass
class ProxyReportConfig:
    """``strata-proxies``: how well does each proxy rank candidates by held-out perplexity?"""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)  # calibration windows feed the proxies
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    supernet: SupernetConfig = field(default_factory=SupernetConfig)  # variants and level grid of the candidates
    proxy: ProxyConfig = field(default_factory=ProxyConfig)  # options of every proxy (its name is unused here)
    proxies: list[str] = field(default_factory=lambda: list(PROXY_NAMES))  # proxies compared
    candidates: int = 40  # candidates scored, all on the budget
    max_walk: int | None = None  # longest random level-switch walk; None = 2 * modules
    allocators: bool = True  # add the no-search allocators' candidates (uniform, flap_global, depth_linear)
    bootstrap: int = 1000  # bootstrap resamples for the 95% intervals
    seed: int = 0  # seeds the candidates, the data windows and the bootstrap; 0 <= seed < 2**32
    device: str = "cpu"  # torch device of the model
    placement: PlacementConfig = field(default_factory=PlacementConfig)  # a model bigger than one device: spread it
    progress: bool = True  # progress bars

    def __post_init__(self) -> None:
        resolve_data_source(self.model.path, self.data)
        check_device(self.device)
        if not self.proxies:
            raise UsageError(f"proxies=[] names no proxy: use some of {', '.join(PROXY_NAMES)}")
        for name in self.proxies:
            _check_name(name, "proxies")
        if self.candidates < 3:
            raise UsageError(f"candidates={self.candidates} is too few to rank: use >= 3")
        if self.bootstrap < 1:
            raise UsageError(f"bootstrap={self.bootstrap} must be a positive integer")
        if self.max_walk is not None and self.max_walk < 0:
            raise UsageError(f"max_walk={self.max_walk} must be >= 0")
        check_seed("seed", self.seed)
