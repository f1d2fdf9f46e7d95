"""A model's own tokenizer: where transformers rebuilds the model type's tokenizer class with another
pre-tokenizer, strata tokenizes as the directory's tokenizer.json defines, and model/ reloads so."""

from __future__ import annotations

import json
import shutil

import torch
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

from supernet.io.data import load_texts
from supernet.io.export import save_pruned
from supernet.io.loading import FIDELITY_SAMPLE, load_model
from supernet.io.perplexity import perplexity
from supernet.io.windows import pack_tokens
from supernet.variants.switch import Switcher


def qwen2_copy(reference_dir, out):
    """The tiny reference model as a Qwen2 (zero q/k/v biases: the same function) whose tokenizer config
    names ``Qwen2Tokenizer``, as a Qwen2 checkpoint with its own byte-level BPE would."""
    llama = AutoModelForCausalLM.from_pretrained(reference_dir, dtype=torch.float32)
    fields = {k: v for k, v in llama.config.to_dict().items() if k not in ("model_type", "architectures")}
    model = AutoModelForCausalLM.from_config(Qwen2Config(**fields)).float()
    missing, unexpected = model.load_state_dict(llama.state_dict(), strict=False)
    assert not unexpected and all(name.endswith("_proj.bias") for name in missing)
    for layer in model.model.layers:
        for name in ("q_proj", "k_proj", "v_proj"):
            torch.nn.init.zeros_(getattr(layer.self_attn, name).bias)
    model.save_pretrained(out)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(reference_dir / name, out / name)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config["tokenizer_class"] = "Qwen2Tokenizer"
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


def file_ids(directory, text=FIDELITY_SAMPLE) -> list[int]:
    return Tokenizer.from_file(str(directory / "tokenizer.json")).encode(text, add_special_tokens=False).ids


def test_a_qwen2_directory_is_tokenized_by_its_own_tokenizer_json(tiny_reference_dir, tmp_path):
    directory = qwen2_copy(tiny_reference_dir, tmp_path / "qwen2")
    rebuilt = AutoTokenizer.from_pretrained(directory)
    assert rebuilt(FIDELITY_SAMPLE, add_special_tokens=False)["input_ids"] != file_ids(directory)  # the trap
    model, tokenizer, adapter = load_model(directory)
    assert tokenizer(FIDELITY_SAMPLE, add_special_tokens=False)["input_ids"] == file_ids(directory)
    # the perplexity its own tokenizer gives: the Llama original's, on the same held-out windows
    reference, reference_tokenizer, _ = load_model(tiny_reference_dir)
    texts = load_texts("builtin", split="eval")
    windows = pack_tokens(tokenizer, texts, seq_len=64, num_sequences=8, seed=0)
    assert torch.equal(windows, pack_tokens(reference_tokenizer, texts, seq_len=64, num_sequences=8, seed=0))
    assert abs(perplexity(model, windows, batch_size=8) / perplexity(reference, windows, batch_size=8) - 1) < 1e-4
    # model/ reloads with the same ids
    saved = save_pruned(model, Switcher(model, adapter).shapes(), tokenizer, tmp_path / "model")
    reloaded = AutoTokenizer.from_pretrained(saved)
    assert reloaded(FIDELITY_SAMPLE, add_special_tokens=False)["input_ids"] == file_ids(directory)
    text = texts[0][:2000]
    assert reloaded(text, add_special_tokens=False)["input_ids"] == file_ids(directory, text)
