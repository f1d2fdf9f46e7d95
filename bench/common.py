"""What every benchmark of issue 7 shares: the machine, side-by-side timing, results files, random Llamas.

- ``machine()``: platform, CPU, cores, torch threads, memory and library versions, written into every
  result so a figure is never quoted without the machine that produced it.
- ``side_by_side(fns, repeats)``: the median seconds of each function, calls interleaved round-robin
  (A B C A B C ...), so a comparison is measured in one run under the same load; ratios are taken
  between these medians.
- ``random_llama(spec)``: a randomly initialised Llama built from a config (no training: memory and
  speed do not depend on the values) and saved once as bf16/float32 safetensors in the user cache, with
  the reference model's tokenizer so :func:`supernet.io.loading.load_model` reads it like any model.
- ``fit_line(x, y)``: least-squares slope, intercept and r^2 (``scipy.stats.linregress``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import resource
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
import torch

from search.app.manifest import git_state
from supernet.io.files import atomic_path, write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
REFERENCE = ROOT / "supernet" / "io" / "reference" / "artifacts" / "default"

log = logging.getLogger(__name__)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine and software a result was measured on."""
    import scipy
    import transformers

    return {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_physical": psutil.cpu_count(logical=False),
        "torch_threads": torch.get_num_threads(),
        "memory_bytes": psutil.virtual_memory().total,
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "scipy": scipy.__version__,
        "git": git_state(),
    }


def setup(threads: int) -> None:
    """Logging, a fixed seed and the torch thread count.

    Timing benchmarks default to one thread: on a shared machine (here 2 cores for several users) a
    second OpenMP thread that waits for a busy core makes every parallel region wait, and medians of a
    2-thread run drift by 2-3x between calls; ratios measured on one thread stay put."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    torch.manual_seed(0)
    torch.set_num_threads(threads)


def side_by_side(
    fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1, self_timed: bool = False
) -> dict[str, dict]:
    """Median (and every sample of) seconds per call of each function, calls interleaved round-robin.

    ``self_timed``: each function returns the seconds of the part that counts (decode without its prefill)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            seconds = fn()
            samples[name].append(seconds if self_timed else time.perf_counter() - start)
    return {name: {"median_s": statistics.median(s), "samples_s": s} for name, s in samples.items()}


def timed(fn: Callable[[], object], device: str = "cpu") -> float:
    """Seconds one call of ``fn`` takes; on a CUDA device the queued kernels are waited for on both sides."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def fit_line(x: list[float], y: list[float]) -> dict:
    """Least-squares line y = slope * x + intercept and its r^2 (scipy.stats.linregress)."""
    from scipy.stats import linregress

    fit = linregress(x, y)
    return {"slope": float(fit.slope), "intercept": float(fit.intercept), "r2": float(fit.rvalue**2)}


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A markdown table of ``rows`` under ``header``; floats with 2 decimals (format others before)."""
    cell = lambda v: f"{v:.2f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def result_path(name: str, quick: bool) -> Path:
    return RESULTS / f"{name}{'-quick' if quick else ''}.json"


def write_result(name: str, quick: bool, payload: dict) -> Path:
    """``bench/results/<name>[-quick].json`` with the machine, then the payload."""
    path = result_path(name, quick)
    write_json(path, {"benchmark": name, "quick": quick, "machine": machine(), **payload})
    return path


def print_result(table: str, path: Path, *notes: object) -> int:
    """Print a benchmark's table, its ``notes`` (verdicts, summaries) and the results file it wrote; returns 0, the
    benchmark's exit status."""
    print(table)
    for note in notes:
        print(note)
    print(f"\n{json.dumps({'written': str(path)})}")
    return 0


# ---- randomly initialised Llamas ---------------------------------------------------------------------
@dataclass(frozen=True)
class LlamaSpec:
    """A Llama shape. GQA groups of g = heads / kv_heads query heads with (2g + 2) * head_dim divisible by
    3 make one attention level cost a whole number of MLP channels (supernet/space/grid.py's joint budget)."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int = 32000
    head_dim: int = 64
    tied: bool = False

    def config(self, dtype: str):
        from transformers import LlamaConfig

        return LlamaConfig(
            hidden_size=self.hidden, num_hidden_layers=self.layers, num_attention_heads=self.heads,
            num_key_value_heads=self.kv_heads, head_dim=self.head_dim, intermediate_size=self.intermediate,
            vocab_size=self.vocab, tie_word_embeddings=self.tied, max_position_embeddings=4096, dtype=dtype,
            bos_token_id=0, eos_token_id=0, pad_token_id=0,
        )  # fmt: skip

    def params(self) -> int:
        attn = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.intermediate
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * (attn + mlp + 2 * self.hidden) + embed + self.hidden


# 0.1B, 0.5B and 1B parameters (the 1B one is TinyLlama-1.1B's shape); g = 2 or 8 for the joint budget
SIZES: dict[str, LlamaSpec] = {
    "0.1b": LlamaSpec(hidden=768, layers=12, heads=12, kv_heads=6, intermediate=2048, tied=True),
    "0.5b": LlamaSpec(hidden=1536, layers=18, heads=24, kv_heads=12, intermediate=4096, tied=True),
    "1b": LlamaSpec(hidden=2048, layers=22, heads=32, kv_heads=4, intermediate=5632),
}


def bench_cache() -> Path:
    """Where random models are kept between runs: ``$STRATA_CACHE_DIR/bench``, else the user cache."""
    if os.environ.get("STRATA_CACHE_DIR"):
        return Path(os.environ["STRATA_CACHE_DIR"]).expanduser() / "bench"
    import platformdirs

    return Path(platformdirs.user_cache_dir("strata")) / "bench"


def random_llama(spec: LlamaSpec, *, dtype: str = "bfloat16", seed: int = 0) -> Path:
    """A saved random Llama of shape ``spec`` (weights ~ N(0, 0.02), norms 1), built once and cached.

    Tensors are generated one at a time in ``dtype`` (the build never holds a float32 copy of a bf16 model)
    and written to one safetensors file next to the config and the reference tokenizer.
    """
    from safetensors.torch import save_file
    from transformers import LlamaForCausalLM

    key = hashlib.sha256(json.dumps([asdict(spec), dtype, seed]).encode()).hexdigest()[:12]
    out = bench_cache() / f"llama-{spec.layers}x{spec.hidden}-{dtype}-{key}"
    if (out / "model.safetensors").is_file():
        return out
    config = spec.config(dtype)
    with torch.device("meta"):
        shapes = {name: p.shape for name, p in LlamaForCausalLM(config).named_parameters()}
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in shapes.items():
        if len(shape) == 1:
            state[name] = torch.ones(shape, dtype=getattr(torch, dtype))  # RMSNorm weights
        else:
            state[name] = torch.empty(shape, dtype=getattr(torch, dtype)).normal_(0.0, 0.02, generator=generator)
    with atomic_path(out, directory=True) as tmp:
        save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config.save_pretrained(tmp)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(REFERENCE / name, tmp / name)
    log.info("saved a random %s-parameter Llama to %s", f"{spec.params():,}", out)
    return out


def model_file_bytes(path: Path) -> int:
    """Bytes of a model directory's safetensors weights on disk."""
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def child_python(module: str, *args: str) -> list[str]:
    """The command that runs ``python -m <module> <args>`` from the repository root."""
    return [sys.executable, "-m", module, *args]
