"""The model's tokenizer as GGUF ``tokenizer.ggml.*`` keys, so that llama.cpp tokenizes as it does.

llama.cpp re-implements each tokenizer: a byte-level BPE is its ``gpt2`` model, with the merges, and a
named pre-tokenizer (``tokenizer.ggml.pre``) that selects the split regex it applies before the merges.
The name is read off ``tokenizer.json``'s pre-tokenizer: GPT-2's built-in ``ByteLevel`` regex is
``gpt-2``; a ``Split`` on Llama 3's regex then ``ByteLevel`` without a regex is ``llama-bpe``; the same
on Qwen2's regex is ``qwen2`` (llama.cpp ``src/llama-vocab.cpp``, ``llm_tokenizer_bpe``). Anything else
(a SentencePiece model, another regex) is refused with the reason, rather than written with a
pre-tokenizer that splits differently.

Whether a BOS/EOS is added is measured on the tokenizer itself (with and without special tokens), not
parsed from its template. The special ids and the merges come from ``gguf.SpecialVocab``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from supernet.errors import UsageError

if TYPE_CHECKING:
    import gguf

# the split regexes of tokenizer.json files, as Meta and Qwen ship them
_CONTRACTIONS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_REST = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
LLAMA3_SPLIT = _CONTRACTIONS + r"\p{N}{1,3}" + _REST  # numbers in runs of up to 3 digits
QWEN2_SPLIT = _CONTRACTIONS + r"\p{N}" + _REST  # one digit at a time
SPLIT_PRE = {LLAMA3_SPLIT: "llama-bpe", QWEN2_SPLIT: "qwen2"}


def pre_tokenizer_name(tokenizer_json: dict) -> str:
    """llama.cpp's name for the pre-tokenizer of a byte-level BPE ``tokenizer.json``; UsageError if none fits."""
    model, decoder = tokenizer_json.get("model") or {}, tokenizer_json.get("decoder") or {}
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder.get("type") != "ByteLevel":
        raise UsageError(f"GGUF export writes byte-level BPE tokenizers only; this one is a {model.get('type')} "
                         f"model with a {decoder.get('type')} decoder")  # fmt: skip
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        return "gpt-2"
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else []
    if (
        len(steps) == 2
        and steps[0].get("type") == "Split"
        and steps[1] == steps[1] | {"type": "ByteLevel", "use_regex": False}
        and not steps[1].get("add_prefix_space")
    ):
        name = SPLIT_PRE.get(steps[0].get("pattern", {}).get("Regex"))
        if name is not None:
            return name
    raise UsageError("GGUF export knows the GPT-2, Llama 3 and Qwen2 pre-tokenizers; this tokenizer.json splits "
                     f"with another ({json.dumps(pre)[:200]}), which llama.cpp would tokenize differently")  # fmt: skip


def add_tokenizer(writer: gguf.GGUFWriter, model_dir: Path, vocab_size: int) -> None:
    """Write ``model_dir``'s tokenizer (``tokenizer.json``) to ``writer``; the token list is padded to the
    embedding's ``vocab_size`` rows with unused tokens, as llama.cpp expects one token per row."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer_json = json.loads((Path(model_dir) / "tokenizer.json").read_text())
    pre = pre_tokenizer_name(tokenizer_json)
    ids = dict(tokenizer_json["model"]["vocab"])
    added = {t["content"]: t for t in tokenizer_json.get("added_tokens", [])}
    ids |= {content: t["id"] for content, t in added.items()}
    if max(ids.values()) >= vocab_size:
        raise UsageError(f"the tokenizer has ids up to {max(ids.values())} but the model embeds {vocab_size} tokens")
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]
    types = [gguf.TokenType.UNUSED] * vocab_size
    for content, i in ids.items():
        tokens[i] = content
        special = added.get(content, {}).get("special")
        types[i] = gguf.TokenType.NORMAL if special is None else (
            gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)  # fmt: skip
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)

    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=vocab_size)
    hf = AutoTokenizer.from_pretrained(model_dir)
    plain = hf("a", add_special_tokens=False)["input_ids"]
    framed = hf("a", add_special_tokens=True)["input_ids"]
    special.add_special_token = {
        "bos": len(framed) > len(plain) and framed[0] == hf.bos_token_id and framed[1:1 + len(plain)] == plain,
        "eos": len(framed) > len(plain) and framed[-1] == hf.eos_token_id and framed[:len(plain)] == plain,
    }  # fmt: skip
    special.add_to_gguf(writer, quiet=True)
