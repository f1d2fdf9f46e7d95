"""How the built-in reference model is made: every hyperparameter in one frozen dataclass, and the trainer.

The reference model is a small Llama (GQA, SwiGLU, RoPE, tied embeddings) trained from scratch on the
Python standard library (:mod:`supernet.io.reference.corpus`) with a byte-level BPE tokenizer trained on
the same text: AdamW, linear warmup then cosine decay (nanoGPT's ``get_lr``), packed windows, fp32 on CPU.
It gives strata a real, trained model to prune with nothing downloaded.

Presets: ``default`` (5.5M parameters, about 8 minutes on 2 CPU cores), ``tiny`` (seconds, tests), and
the zoo (``zoo-*``, :data:`ZOO`): models of the same recipe in the layouts of real families, each with
the property that breaks pruners built around one shape (Qwen2.5-0.5B's 7:1 GQA with q/k/v biases,
Qwen3's head_dim != hidden / heads with q/k norms, Llama-3's 4:1 GQA, an untied MHA Llama, Gemma 2's
head_dim 256 with soft-capping, sandwich norms and alternating sliding/global layers, Phi-3's fused
projections, Qwen3-MoE's routed experts), so that a GQA group is no whole number of MLP channels.
The weights are saved in bfloat16 to stay small, while ``config.json`` says float32, so
``from_pretrained`` loads (and strata computes) in float32.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from supernet.io.perplexity import perplexity
from supernet.io.reference.corpus import corpus_hash, corpus_texts
from supernet.io.reference.tokenizer import save_tokenizer, train_tokenizer
from supernet.io.windows import pack_tokens

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, PreTrainedModel

logger = logging.getLogger(__name__)

INFO_FILE = "reference.json"


@dataclass(frozen=True)
class Recipe:
    """Every choice that shapes the reference model; its hash keys the cache."""

    name: str  # preset name, also the cache directory prefix
    family: str = "llama"  # transformers model type: llama | qwen2 | qwen3 | gemma2 | phi3
    # tokenizer
    vocab_size: int = 4096  # byte-level BPE entries: 256 bytes + <|endoftext|> + merges
    # architecture (LlamaConfig)
    num_layers: int = 6
    hidden_size: int = 256
    num_heads: int = 8  # query heads
    num_kv_heads: int = 4  # GQA: two query heads share one K/V head
    head_dim: int = 32  # per head; hidden_size / num_heads in Llama, free in Qwen3
    intermediate_size: int = 704  # SwiGLU width, ~8/3 * hidden rounded to a multiple of 64
    max_position_embeddings: int = 2048  # room for the seq-2048 perplexity convention
    rope_theta: float = 10_000.0
    rms_norm_eps: float = 1e-5
    initializer_range: float = 0.05  # std of the normal init; beat 0.02 and 0.08 (ppl 35 vs 49, 43)
    tie_word_embeddings: bool = True  # the embedding is a large share of a small model
    # data
    seq_len: int = 256  # tokens per packed training (and evaluation) window
    max_train_chars: int | None = None  # cut the train split after this many characters (None: all)
    eval_sequences: int = 256  # held-out windows scored for the reported perplexity
    # optimisation (AdamW, warmup + cosine)
    steps: int = 680  # ~8 minutes on 2 uncontended CPU cores (1.4 steps/s), 2.8M tokens: one epoch
    batch_size: int = 16  # windows per step: 4096 tokens
    learning_rate: float = 3e-3  # peak, reached after the warmup
    min_learning_rate: float = 3e-4  # end of the cosine decay
    warmup_steps: int = 40
    weight_decay: float = 0.1  # on matrices only, not on norms
    beta1: float = 0.9
    beta2: float = 0.99  # beat 0.95 on this short run
    grad_clip: float = 1.0  # max global gradient norm
    seed: int = 0  # torch.manual_seed for init, and the window shuffle
    num_threads: int | None = None  # torch threads while training (None: every usable core)
    save_dtype: str = "bfloat16"  # dtype of the saved weights; loading is float32 (config.json says so)
    # the family's own config fields beyond the shared ones, as (name, value) pairs (Gemma 2's window)
    family_config: tuple[tuple[str, Any], ...] = ()
    # a mixture of experts: weight of the router's load-balancing loss while training (0: not added)
    router_aux_loss: float = 0.0

    def __post_init__(self) -> None:
        assert self.family in CONFIG_CLASSES, f"family {self.family!r} is not one of {', '.join(CONFIG_CLASSES)}"
        assert self.num_heads % self.num_kv_heads == 0, (
            f"num_heads {self.num_heads} is not a multiple of num_kv_heads {self.num_kv_heads}"
        )
        assert self.warmup_steps < self.steps, f"warmup_steps {self.warmup_steps} >= steps {self.steps}"


CONFIG_CLASSES = {
    "llama": "LlamaConfig",
    "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config",
    "gemma2": "Gemma2Config",
    "phi3": "Phi3Config",
    "qwen3_moe": "Qwen3MoeConfig",
    "qwen2_moe": "Qwen2MoeConfig",
}
ZOO_TRAINING = dict(steps=200, warmup_steps=20)  # ~7 minutes each on 2 cores, 0.8M tokens

ZOO: dict[str, Recipe] = {
    # Qwen2.5-0.5B's proportions: 14 heads on 2 K/V heads (7:1), q/k/v biases, MLP 5.4x hidden, tied
    "zoo-qwen2": Recipe(name="zoo-qwen2", family="qwen2", hidden_size=224, num_heads=14, num_kv_heads=2,
                        head_dim=16, intermediate_size=1216, steps=400, warmup_steps=30),
    # Qwen3: head_dim 64 with 8 heads on a 256-wide residual (512 != 256), per-head q/k norms, tied
    "zoo-qwen3": Recipe(name="zoo-qwen3", family="qwen3", hidden_size=256, num_heads=8, num_kv_heads=4,
                        head_dim=64, intermediate_size=768, **ZOO_TRAINING),
    # Llama-3's 4:1 GQA and 3.5x MLP: a group costs 106.7 MLP channels
    "zoo-llama3": Recipe(name="zoo-llama3", hidden_size=256, num_heads=8, num_kv_heads=2, head_dim=32,
                         intermediate_size=896, steps=300, warmup_steps=30),
    # multi-head attention (every head its own group) with untied embeddings, as Llama-2
    "zoo-mha": Recipe(name="zoo-mha", hidden_size=256, num_heads=8, num_kv_heads=8, head_dim=32,
                      intermediate_size=688, tie_word_embeddings=False, **ZOO_TRAINING),
    # Gemma 2: head_dim free of hidden / heads (4 x 128 = 512 on a 256-wide residual; 256 as in Gemma-2-2B
    # would double the attention and the ~7 minutes of training) and 2:1 GQA, GeGLU, four norms per layer,
    # scaled tied embeddings, attention (50) and final (30) soft-capping, query_pre_attn_scalar = head_dim,
    # sliding (window 128 < the 256-token windows) and global layers alternating
    "zoo-gemma2": Recipe(name="zoo-gemma2", family="gemma2", hidden_size=256, num_heads=4, num_kv_heads=2,
                         head_dim=128, intermediate_size=768, family_config=(
                             ("attn_logit_softcapping", 50.0), ("final_logit_softcapping", 30.0),
                             ("query_pre_attn_scalar", 128), ("sliding_window", 128),
                             ("hidden_activation", "gelu_pytorch_tanh")), **ZOO_TRAINING),
    # Phi-3-mini's fused qkv_proj and gate_up_proj, multi-head attention (32/32), MLP 2.67x hidden, untied
    "zoo-phi3": Recipe(name="zoo-phi3", family="phi3", hidden_size=256, num_heads=8, num_kv_heads=8, head_dim=32,
                       intermediate_size=688, tie_word_embeddings=False, **ZOO_TRAINING),
    # Qwen3-MoE (Qwen3-30B-A3B's block at small scale): 8 routed experts of width 256, top-2 renormalised, per-head
    # q/k norms, every layer sparse; the router's load-balancing loss keeps every expert in use while training
    "zoo-qwen3moe": Recipe(name="zoo-qwen3moe", family="qwen3_moe", hidden_size=256, num_heads=8, num_kv_heads=4,
                           head_dim=32, intermediate_size=256, family_config=(
                               ("moe_intermediate_size", 256), ("num_local_experts", 8), ("num_experts_per_tok", 2),
                               ("norm_topk_prob", True), ("router_aux_loss_coef", 0.01)),
                           router_aux_loss=0.01, **ZOO_TRAINING),
    # Qwen2-MoE (Qwen1.5-MoE-A2.7B's block at small scale): 8 routed experts of width 256, top-2 not renormalised,
    # a shared expert of 512 channels behind its sigmoid gate, q/k/v biases, every layer sparse
    "zoo-qwen2moe": Recipe(name="zoo-qwen2moe", family="qwen2_moe", hidden_size=256, num_heads=8, num_kv_heads=4,
                           head_dim=32, intermediate_size=256, family_config=(
                               ("moe_intermediate_size", 256), ("num_experts", 8), ("num_experts_per_tok", 2),
                               ("shared_expert_intermediate_size", 512), ("norm_topk_prob", False),
                               ("router_aux_loss_coef", 0.01)),
                           router_aux_loss=0.01, **ZOO_TRAINING),
}  # fmt: skip

RECIPES: dict[str, Recipe] = {
    **ZOO,
    "default": Recipe(name="default"),
    "tiny": Recipe(
        name="tiny",
        vocab_size=512,
        num_layers=2,
        hidden_size=64,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        intermediate_size=128,
        max_position_embeddings=512,
        seq_len=128,
        max_train_chars=1_000_000,  # enough for 80 steps, keeps tokenizing fast
        eval_sequences=64,
        steps=80,
        batch_size=8,
        learning_rate=1e-2,
        min_learning_rate=1e-3,
        warmup_steps=8,
        num_threads=1,  # too small to gain from threads; one thread never oversubscribes a busy CPU
    ),
}


LATER_FIELDS = {
    "family": "llama",
    "family_config": (),
    "router_aux_loss": 0.0,
}  # fields added after presets were built: hashed only when not this default


def recipe_hash(recipe: Recipe) -> str:
    """sha1 of the recipe's fields as sorted JSON (a later field at its default left out: old keys stay)."""
    fields = {k: v for k, v in dataclasses.asdict(recipe).items() if LATER_FIELDS.get(k, object()) != v}
    return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def reference_key(recipe: Recipe) -> str:
    """12 hex digits naming one build: the recipe and the corpus it is trained on."""
    return hashlib.sha1(f"{recipe_hash(recipe)}\0{corpus_hash()}".encode()).hexdigest()[:12]


def model_config(recipe: Recipe, *, bos_eos_id: int) -> PreTrainedConfig:
    """The transformers config of the recipe's family and architecture."""
    import transformers

    return getattr(transformers, CONFIG_CLASSES[recipe.family])(
        vocab_size=recipe.vocab_size,
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        head_dim=recipe.head_dim,
        hidden_act="silu",
        max_position_embeddings=recipe.max_position_embeddings,
        rope_theta=recipe.rope_theta,
        rms_norm_eps=recipe.rms_norm_eps,
        initializer_range=recipe.initializer_range,
        tie_word_embeddings=recipe.tie_word_embeddings,
        bos_token_id=bos_eos_id,
        eos_token_id=bos_eos_id,
        pad_token_id=bos_eos_id,
        **dict(recipe.family_config),
    )


def learning_rate(recipe: Recipe, step: int) -> float:
    """Learning rate at ``step`` (nanoGPT's ``get_lr``)."""
    # 1) linear warmup
    if step < recipe.warmup_steps:
        return recipe.learning_rate * (step + 1) / recipe.warmup_steps
    # 2) cosine decay from the peak to the minimum over the remaining steps
    progress = (step - recipe.warmup_steps) / max(1, recipe.steps - 1 - recipe.warmup_steps)
    coefficient = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return recipe.min_learning_rate + coefficient * (recipe.learning_rate - recipe.min_learning_rate)


def _optimizer(recipe: Recipe, model: torch.nn.Module) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (linears, embedding) and none on norm weights."""
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    other = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decayed, "weight_decay": recipe.weight_decay},
        {"params": other, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=recipe.learning_rate, betas=(recipe.beta1, recipe.beta2))


def _train(recipe: Recipe, model: PreTrainedModel, windows: torch.LongTensor, *, progress: bool = True) -> None:
    """Run ``recipe.steps`` AdamW steps on batches of ``windows`` [n, seq_len], cycling through them."""
    optimizer = _optimizer(recipe, model)
    model.train()
    bar = tqdm(range(recipe.steps), desc=f"training reference '{recipe.name}'", disable=not progress)
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(recipe, step)
        rows = torch.arange(step * recipe.batch_size, (step + 1) * recipe.batch_size) % windows.shape[0]
        batch = windows[rows]  # [batch_size, seq_len]
        routing = {"output_router_logits": True} if recipe.router_aux_loss else {}  # + the balancing loss
        loss = model(input_ids=batch, labels=batch, **routing).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()


def _save(model: PreTrainedModel, tokenizer: Any, info: dict[str, Any], recipe: Recipe, out: Path) -> None:
    """Weights in ``recipe.save_dtype``, config saying float32, tokenizer, ``reference.json``."""
    model.to(getattr(torch, recipe.save_dtype)).save_pretrained(out)
    model.float()
    config_path = out / "config.json"
    config = json.loads(config_path.read_text())
    config["dtype"] = "float32"  # load (and prune) in float32 whatever the stored dtype
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_tokenizer(tokenizer, out)
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")


def _replace_dir(built: Path, target: Path) -> None:
    """Move ``built`` to ``target``, replacing any previous directory there."""
    if target.exists():
        stale = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, stale)
        os.replace(built, target)
        shutil.rmtree(stale)
    else:
        os.replace(built, target)


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _build(recipe: Recipe, out: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train tokenizer and model, measure held-out perplexity, save everything into ``out``."""
    from transformers import AutoModelForCausalLM

    train_texts = corpus_texts("train", max_chars=recipe.max_train_chars)
    tokenizer = train_tokenizer(train_texts, recipe.vocab_size)
    windows = pack_tokens(tokenizer, train_texts, seq_len=recipe.seq_len, num_sequences=None, seed=recipe.seed)
    eval_windows = pack_tokens(
        tokenizer, corpus_texts("eval"), seq_len=recipe.seq_len, num_sequences=recipe.eval_sequences, seed=0
    )
    logger.info("training on %d windows of %d tokens", windows.shape[0], recipe.seq_len)
    torch.manual_seed(recipe.seed)
    model = AutoModelForCausalLM.from_config(model_config(recipe, bos_eos_id=tokenizer.eos_token_id)).float()
    start = time.perf_counter()
    _train(recipe, model, windows, progress=progress)
    train_seconds = time.perf_counter() - start
    info = {
        "key": reference_key(recipe),
        "recipe": dataclasses.asdict(recipe),
        "recipe_hash": recipe_hash(recipe),
        "corpus_hash": corpus_hash(),
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_tokens": recipe.steps * recipe.batch_size * recipe.seq_len,
        "train_seconds": round(train_seconds, 1),
        "eval_ppl": perplexity(model, eval_windows, batch_size=16),
        "eval_seq_len": recipe.seq_len,
        "eval_tokens": eval_windows.numel(),
        "torch_threads": torch.get_num_threads(),
    }
    _save(model, tokenizer, info, recipe, out)
    return info


def train_reference(recipe: Recipe, out_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train the reference model of ``recipe`` and save a Hugging Face directory at ``out_dir``.

    The directory is built next to ``out_dir`` and renamed into place, so ``out_dir`` is either the old
    one or the complete new one. Returns the contents of its ``reference.json``.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    building = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir()
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.num_threads or _usable_cores())
    try:
        info = _build(recipe, building, progress=progress)
        _replace_dir(building, out_dir)
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(building, ignore_errors=True)
    logger.info(
        "reference '%s': %d parameters, %.0f s of training, held-out ppl %.2f at seq %d -> %s",
        recipe.name, info["num_parameters"], info["train_seconds"], info["eval_ppl"], recipe.seq_len, out_dir,
    )  # fmt: skip
    return info
