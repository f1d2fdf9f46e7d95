"""``strata`` end to end, with the defaults a user gets, on random 2-layer models in the layouts of real
checkpoints (their heads, K/V heads, head_dim, MLP width, biases and tying; a narrow residual and the
tiny reference's tokenizer keep them small); ``model/`` reloads in a process that never imports strata.

The default supernet (OBS + refit with an intercept) costs O(width^3) per MLP on the real MLP widths,
minutes on 2 CPU cores for 11008-18944 channels: the layouts whose MLP is wider than ``FULL_DEFAULTS_MLP``
run every default but the supernet (FLAP's criterion and bias, which need no Gram matrix); the search
runs with every default but its length (``SHORT_SEARCH``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from layouts import LAYOUTS, layout_config
from transformers import AutoModelForCausalLM

FULL_DEFAULTS_MLP = 5000  # Qwen2.5-0.5B (4864) and Qwen3-0.6B (3072) run with the default supernet
CHEAP_SUPERNET = ["supernet.criterion=flap", "supernet.compensation=bias"]
SHORT_SEARCH = ["search.trials=8", "search.offspring=4", "search.stage_tokens=[64,128,256]", "search.survivors=[2,1,1]"]

RELOAD = """
import json, sys
import torch
from transformers import AutoModelForCausalLM
for directory in sys.argv[1:]:
    model = AutoModelForCausalLM.from_pretrained(directory, trust_remote_code=True)
    out = model.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "generated": out.shape[1]}))
"""


def layout_dir(name: str, tokenizer_dir: Path, out: Path) -> Path:
    torch.manual_seed(0)
    config = layout_config(name, layers=2, vocab=512, hidden=64)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / file, out / file)
    return out


@pytest.fixture(scope="module")
def runs(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("layouts")
    text = root / "calib.txt"
    text.write_text((Path(json.__file__).parent / "decoder.py").read_text() * 3)
    out = {}
    for name in sorted(LAYOUTS):
        model = layout_dir(name, tiny_reference_dir, root / name)
        run_dir = root / f"run-{name}"
        args = [f"model.path={model}", "data.source=text", f"data.path={text}", "data.seq_len=32",
                "data.calib_sequences=4", "data.eval_seq_len=32", "data.eval_sequences=4", "progress=false",
                f"hydra.run.dir={run_dir}", *SHORT_SEARCH]  # fmt: skip
        if LAYOUTS[name][2] > FULL_DEFAULTS_MLP:
            args += CHEAP_SUPERNET
        proc = subprocess.run(
            [sys.executable, "-m", "search.app.cli", *args], capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        out[name] = run_dir
    return out


def test_every_layout_is_pruned_on_budget_with_the_defaults(runs: dict[str, Path]) -> None:
    for name, run_dir in runs.items():
        budget = json.loads((run_dir / "metrics.json").read_text())["budget"]
        assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"], name
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["allocation"] == "search" and set(metrics["baselines"]) == {"uniform", "flap_global"}, name
        layers = json.loads((run_dir / "allocation.json").read_text())["layers"]
        assert all(0 < entry["mlp_units"] < entry["mlp_units_total"] for entry in layers), name


def test_every_pruned_layout_reloads_without_strata(runs: dict[str, Path]) -> None:
    names = sorted(runs)
    proc = subprocess.run([sys.executable, "-c", RELOAD, *(str(runs[n] / "model") for n in names)],
                          capture_output=True, text=True, check=False, cwd="/")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, line in zip(names, proc.stdout.strip().splitlines(), strict=True):
        reloaded = json.loads(line)
        metrics = json.loads((runs[name] / "metrics.json").read_text())
        assert reloaded == {"params": metrics["pruned"]["params"], "generated": 6}, name
