"""The exported GGUF run by a real llama.cpp (llama-cpp-python, built from source by .ci/run): its tokens,
next-token logits and greedy generation against the saved model in transformers.

Pruned models in the layouts of Llama-3.1-8B, Mistral-7B, Qwen2.5-0.5B, Phi-3-mini and Llama-3.2-1B
(tests/gguf_models.py: non-uniform widths, a removed attention in layer 1 (layer 0 for Llama-3.2-1B), a
removed MLP in layer 2, output biases).
Without llama-cpp-python these tests skip, unless ``STRATA_REQUIRE_LLAMA_CPP=1`` (set by .ci/run) makes
the missing package a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from gguf_models import SAMPLE, pruned_layout_model
from transformers import AutoModelForCausalLM, AutoTokenizer

from supernet.io.export.gguf import export_gguf

if os.environ.get("STRATA_REQUIRE_LLAMA_CPP") == "1":
    import llama_cpp
else:
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (.ci/run builds it)")

# layout, the layer whose attention is removed (Llama-3.2-1B: layer 0, whose head count llama.cpp reads
# as the model's; it also has tied embeddings)
LAYOUTS = [("llama-3.1-8b", 1), ("mistral-7b", 1), ("qwen2.5-0.5b", 1), ("phi-3-mini", 1), ("llama-3.2-1b", 0)]
POSITIONS = 128


class Pair:
    """One pruned model, in transformers and in llama.cpp."""

    def __init__(self, model_dir: Path, gguf_path: Path) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(model_dir, trust_remote_code=True).eval()
        self.gguf_path = gguf_path
        self.llm = llama_cpp.Llama(str(gguf_path), n_ctx=512, logits_all=True, n_threads=2, seed=0, verbose=False)

    def close(self) -> None:
        self.llm.close()

    def hf_logits(self, ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            return self.model(torch.tensor([ids])).logits[0].float().numpy()

    def cpp_logits(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        return np.array(self.llm.scores[: len(ids)])


@pytest.fixture(scope="module", params=LAYOUTS, ids=[name for name, _ in LAYOUTS])
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    name, removed_attention = request.param
    root = tmp_path_factory.mktemp(name)
    model_dir = pruned_layout_model(name, root / "model", removed_attention=removed_attention)
    pair = Pair(model_dir, export_gguf(model_dir, root / "model.gguf"))
    yield pair
    pair.close()


def test_llama_cpp_tokenizes_like_the_models_tokenizer(pair: Pair) -> None:
    text = SAMPLE[:6000]
    expected = pair.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert pair.llm.tokenize(text.encode(), add_bos=False, special=False) == expected
    framed = pair.tokenizer(text[:200])["input_ids"]  # with the tokenizer's own BOS rule
    assert pair.llm.tokenize(text[:200].encode(), add_bos=pair.llm.metadata.get("tokenizer.ggml.add_bos_token")
                             == "true", special=False) == framed  # fmt: skip


def test_next_token_logits_agree_in_f32(pair: Pair) -> None:
    ids = pair.tokenizer(SAMPLE, add_special_tokens=False)["input_ids"][:POSITIONS]
    hf, cpp = pair.hf_logits(ids), pair.cpp_logits(ids)
    assert (hf.argmax(-1) == cpp.argmax(-1)).mean() >= 0.98
    assert np.abs(hf - cpp).max() <= 0.05
    assert hf.std() > 0.5  # logits with clear winners: agreement is not among ties


def test_greedy_generation_is_identical(pair: Pair) -> None:
    prompt = pair.tokenizer(SAMPLE[:300], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = pair.model.generate(torch.tensor([prompt]), max_new_tokens=16, min_new_tokens=16, do_sample=False,
                                  pad_token_id=pair.tokenizer.pad_token_id)  # fmt: skip
    expected = out[0, len(prompt) :].tolist()
    pair.llm.reset()
    generated = []
    for token in pair.llm.generate(prompt, top_k=1, temp=0.0, reset=True):
        generated.append(token)
        if len(generated) == 16:
            break
    assert generated == expected


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_f16_and_q8_0_files_run_close_to_f32(pair: Pair, dtype: str, tmp_path: Path) -> None:
    path = export_gguf(pair.gguf_path.parent / "model", tmp_path / f"{dtype}.gguf", dtype=dtype)
    assert path.stat().st_size < pair.gguf_path.stat().st_size * (0.6 if dtype == "f16" else 0.4)
    ids = pair.tokenizer(SAMPLE, add_special_tokens=False)["input_ids"][:POSITIONS]
    llm = llama_cpp.Llama(str(path), n_ctx=512, logits_all=True, n_threads=2, verbose=False)
    try:
        llm.eval(ids)
        cpp = np.array(llm.scores[:POSITIONS])
    finally:
        llm.close()
    hf = pair.hf_logits(ids)
    assert (hf.argmax(-1) == cpp.argmax(-1)).mean() >= 0.9
