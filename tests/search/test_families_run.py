"""``strata`` end to end on the families with their own quirks (Gemma 2, Gemma 3, Phi-3, OLMo 2, Granite):
random 2-layer models in the layouts of real checkpoints (heads, K/V heads, head_dim, MLP width, tying,
soft-capping, multipliers; a narrow residual and the tiny reference's tokenizer keep them small), pruned to
keep 0.5 with the defaults but the supernet and the search's length, as tests/search/app/test_real_layouts_run.py
does for the Llama-like layouts (every MLP here is wider than its FULL_DEFAULTS_MLP: FLAP's criterion and
bias, which need no Gram matrix). ``model/`` reloads in a process that never imports strata, with
``metrics.json``'s parameter count, and generates."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from layouts import FAMILY_LAYOUTS, layout_config
from transformers import AutoModelForCausalLM

CHEAP_SUPERNET = ["supernet.criterion=flap", "supernet.compensation=bias"]
SHORT_SEARCH = ["search.trials=8", "search.offspring=4", "search.stage_tokens=[64,128,256]", "search.survivors=[2,1,1]"]

RELOAD = """
import json, sys
import torch
from transformers import AutoModelForCausalLM
for directory in sys.argv[1:]:
    model = AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=True)
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("supernet", "search", "proxies"))
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "generated": out.shape[1],
                      "family": type(model.model.layers[0]).__name__, "strata_modules": loaded}))
"""
LAYER_CLASSES = {"gemma-2-2b": "Gemma2DecoderLayer", "gemma-3-1b": "Gemma3DecoderLayer",
                 "phi-3-mini": "Phi3DecoderLayer", "olmo-2-7b": "Olmo2DecoderLayer",
                 "granite-3.1-2b": "GraniteDecoderLayer"}  # fmt: skip


def layout_dir(name: str, tokenizer_dir: Path, out: Path) -> Path:
    torch.manual_seed(0)
    config = layout_config(name, layers=2, vocab=512, hidden=64)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / file, out / file)
    return out


@pytest.fixture(scope="module")
def runs(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("families")
    text = root / "calib.txt"
    text.write_text((Path(json.__file__).parent / "decoder.py").read_text() * 3)
    out = {}
    for name in sorted(FAMILY_LAYOUTS):
        model = layout_dir(name, tiny_reference_dir, root / name)
        run_dir = root / f"run-{name}"
        args = [f"model.path={model}", "data.source=text", f"data.path={text}", "data.seq_len=32",
                "data.calib_sequences=4", "data.eval_seq_len=32", "data.eval_sequences=4", "progress=false",
                f"hydra.run.dir={run_dir}", *SHORT_SEARCH, *CHEAP_SUPERNET]  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "search.app.cli", *args], capture_output=True, text=True,
                              check=False)  # fmt: skip
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        out[name] = run_dir
    return out


def test_every_family_is_pruned_on_budget(runs: dict[str, Path]) -> None:
    for name, run_dir in runs.items():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        budget = metrics["budget"]
        assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"], name
        assert metrics["allocation"] == "search" and set(metrics["baselines"]) == {"uniform", "flap_global"}, name
        assert metrics["pruned"]["params"] < metrics["dense"]["params"], name
        layers = json.loads((run_dir / "allocation.json").read_text())["layers"]
        assert all(0 < entry["mlp_units"] < entry["mlp_units_total"] for entry in layers), name
        shapes = json.loads((run_dir / "model" / "config.json").read_text())["layer_shapes"]
        assert [s["intermediate_size"] for s in shapes] == [entry["mlp_units"] for entry in layers], name


def test_every_pruned_family_reloads_without_strata_in_its_own_classes(runs: dict[str, Path]) -> None:
    names = sorted(runs)
    proc = subprocess.run([sys.executable, "-c", RELOAD, *(str(runs[n] / "model") for n in names)],
                          capture_output=True, text=True, check=False, cwd="/")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, line in zip(names, proc.stdout.strip().splitlines(), strict=True):
        reloaded = json.loads(line)
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        assert reloaded == {"params": metrics["pruned"]["params"], "generated": 6,
                            "family": LAYER_CLASSES[name], "strata_modules": []}, name  # fmt: skip
