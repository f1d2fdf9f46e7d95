"""The trap of issue 27: lm-eval loading a Qwen2 directory that ships its own byte-level BPE rebuilds it as
``Qwen2Tokenizer`` with another pre-tokenizer; the wrapper passes the tokenizer the model really has."""

from __future__ import annotations

import json
import shutil

from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, Qwen2Config

from search.evaluate.harness import harness_model
from supernet.io.loading import FIDELITY_SAMPLE, load_model


def test_lm_eval_gets_the_ids_of_the_model_s_own_tokenizer_json(tiny_reference_dir, tmp_path) -> None:
    from lm_eval.models.huggingface import HFLM

    directory = tmp_path / "qwen2"
    config = Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=512, max_position_embeddings=128)  # fmt: skip
    AutoModelForCausalLM.from_config(config).save_pretrained(directory)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_reference_dir / name, directory / name)
    tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
    (directory / "tokenizer_config.json").write_text(
        json.dumps({**tokenizer_config, "tokenizer_class": "Qwen2Tokenizer"})
    )
    own = Tokenizer.from_file(str(directory / "tokenizer.json")).encode(FIDELITY_SAMPLE, add_special_tokens=False).ids
    by_path = HFLM(pretrained=str(directory), device="cpu", batch_size=1)  # lm-eval's own AutoTokenizer load
    assert by_path.tok_encode(FIDELITY_SAMPLE, add_special_tokens=False) != own  # the trap
    model, tokenizer, _ = load_model(directory)
    assert harness_model(model, tokenizer, batch_size=1).tok_encode(FIDELITY_SAMPLE, add_special_tokens=False) == own
