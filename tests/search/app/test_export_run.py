"""``export.gguf=true``: a searched run of the tiny reference model writes ``model.gguf`` beside ``model/``,
and llama.cpp computes what transformers computes from ``model/`` (when llama-cpp-python is installed;
.ci/run requires it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from test_cli import TINY, strata
from transformers import AutoModelForCausalLM, AutoTokenizer

from supernet.io.export.deci_layers import deci_layer


@pytest.fixture(scope="module")
def gguf_run(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("gguf-run")
    proc = strata([*TINY, "budget.keep=0.5", "export.gguf=true"], run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_the_run_writes_model_gguf_with_the_searched_widths(gguf_run: Path) -> None:
    metrics = json.loads((gguf_run / "metrics.json").read_text())
    path = gguf_run / "model.gguf"
    assert metrics["gguf"] == {"file": "model.gguf", "dtype": "f32", "bytes": path.stat().st_size}
    shapes = json.loads((gguf_run / "model" / "config.json").read_text())["layer_shapes"]
    reader = gguf.GGUFReader(path)
    widths = [deci_layer(i, s) for i, s in enumerate(shapes)]
    assert reader.get_field("deci.feed_forward_length").contents() == [w.ff for w in widths]
    assert reader.get_field("deci.attention.head_count").contents() == [w.heads for w in widths]
    assert len({s["intermediate_size"] for s in shapes}) > 1  # the search left the layers at their own widths


def test_llama_cpp_runs_the_searched_model_as_transformers_does(gguf_run: Path) -> None:
    if os.environ.get("STRATA_REQUIRE_LLAMA_CPP") == "1":
        import llama_cpp
    else:
        llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (.ci/run builds it)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_run / "model")
    model = AutoModelForCausalLM.from_pretrained(gguf_run / "model", trust_remote_code=True).eval()
    text = (Path(json.__file__).parent / "encoder.py").read_text()
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:128]
    llm = llama_cpp.Llama(str(gguf_run / "model.gguf"), n_ctx=256, logits_all=True, n_threads=2, verbose=False)
    try:
        assert llm.tokenize(text.encode(), add_bos=False, special=False)[:128] == ids
        llm.eval(ids)
        cpp = np.array(llm.scores[: len(ids)])
    finally:
        llm.close()
    with torch.no_grad():
        hf = model(torch.tensor([ids])).logits[0].numpy()
    assert (hf.argmax(-1) == cpp.argmax(-1)).mean() >= 0.98
    assert np.abs(hf - cpp).max() <= 0.05
