"""Pruned models in real layouts, with tokenizers in the styles of their families, for the GGUF tests
(tests/supernet/export/test_gguf*.py) and bench.serve.

Each model is a random 4-layer model in a real layout (tests/layouts.py, residual 64) whose layers are
pruned to different widths through the Switcher, as a search would leave them: layer 0 keeps some
GQA groups, layer 1 loses its attention (its ``o_proj`` bias stays; or layer 0 does), layer 2 loses its MLP, layer 3
keeps a slice of each; compensation biases and refit output weights as the default supernet makes them.
Weights are drawn at a larger scale than the families' initialisers, so that next-token logits are not
all ties and top-1 agreement means something.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from layouts import layout_config
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

from supernet.io.adapters import adapter_for
from supernet.io.export import save_pruned
from supernet.io.export.gguf_vocab import LLAMA3_SPLIT, QWEN2_SPLIT
from supernet.variants.switch import Switcher, Variant

SAMPLE = (Path(sys.modules["json"].__file__).parent / "decoder.py").read_text()  # Python source, as served
STYLE = {"llama-3.1-8b": "llama-bpe", "llama-3.2-1b": "llama-bpe", "mistral-7b": "gpt-2", "qwen2.5-0.5b": "qwen2",
         "phi-3-mini": "gpt-2"}  # fmt: skip
BOS = "<|begin_of_text|>"
EOS = "<|endoftext|>"


def corpus(files: int = 40) -> list[str]:
    """A few stdlib modules' source: the text the tokenizers are trained on."""
    root = Path(sys.modules["json"].__file__).parent.parent
    return [p.read_text(errors="replace") for p in sorted(root.glob("*.py"))[:files]]


def style_tokenizer(style: str, vocab_size: int = 600) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on stdlib source with the pre-tokenizer of ``style`` (``gpt-2``,
    ``llama-bpe``: Llama 3's split and a BOS added to every text, ``qwen2``: Qwen2's split)."""
    tokenizer = Tokenizer(models.BPE())
    if style == "gpt-2":
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        split = LLAMA3_SPLIT if style == "llama-bpe" else QWEN2_SPLIT
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(split), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])  # fmt: skip
    tokenizer.decoder = decoders.ByteLevel()
    specials = [EOS, BOS] if style == "llama-bpe" else [EOS]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    if style == "llama-bpe":
        bos = tokenizer.token_to_id(BOS)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=EOS, pad_token=EOS,
                                   bos_token=BOS if style == "llama-bpe" else EOS)  # fmt: skip


def pruned_layout_model(name: str, out: Path, *, removed_attention: int = 1, scale: float = 0.25) -> Path:
    """Save a pruned 4-layer model in layout ``name`` to ``out`` (strata's ``model/``); returns ``out``.
    The attention of layer ``removed_attention`` (0 or 1) is removed, with an output bias."""
    tokenizer = style_tokenizer(STYLE[name])
    torch.manual_seed(0)
    config = layout_config(name, layers=4, vocab=len(tokenizer), hidden=64)
    config.bos_token_id, config.eos_token_id, config.pad_token_id = (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)  # fmt: skip
    model = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 2:  # std scale * 4 / sqrt(fan_in): logits with clear winners
                p.normal_(0.0, 4 * scale / p.shape[1] ** 0.5)
            elif name.endswith("norm.weight"):
                p.uniform_(0.8, 1.2)
            else:  # the families' biases
                p.normal_(0.0, 0.1)
    adapter = adapter_for(config)
    g, c = adapter.geometry, adapter.geometry.intermediate
    groups = g.num_kv_heads
    gen = torch.Generator().manual_seed(1)
    bias = lambda: torch.randn(config.hidden_size, generator=gen) * 0.1  # noqa: E731
    kept_channels = lambda n: torch.randperm(c, generator=gen)[:n].sort().values  # noqa: E731
    some_groups, none = torch.arange(max(groups // 2, 1)), torch.tensor([], dtype=torch.long)
    variants = {
        (0, "attn"): Variant(none if removed_attention == 0 else some_groups, out_bias=bias()),
        (0, "mlp"): Variant(kept_channels(c // 3), out_bias=bias()),
        (1, "attn"): Variant(none if removed_attention == 1 else some_groups, out_bias=bias()),
        (1, "mlp"): Variant(kept_channels(c // 2 + 5)),
        (2, "attn"): Variant(torch.arange(groups)),
        (2, "mlp"): Variant(none),
        (3, "attn"): Variant(torch.tensor([groups - 1])),
        (3, "mlp"): Variant(kept_channels(77), out_bias=bias()),
    }
    switcher = Switcher(model, adapter)
    switcher.apply(variants)
    save_pruned(model, switcher.shapes(), tokenizer, out)
    return out


def export_cli(capsys, *args: str) -> tuple[int, str]:
    """``strata-export ARGS --quiet`` in this process: (exit status, stderr)."""
    from search.app.export import main

    try:
        main([*args, "--quiet"])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    return status, capsys.readouterr().err
