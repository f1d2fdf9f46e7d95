"""``strata`` run end to end on random 2-layer models in the layouts of tests/layouts.py, and reloaded in a
process that never imports strata (tests/search/app/test_real_layouts_run.py, test_families_run.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from layouts import layout_config
from transformers import AutoModelForCausalLM

CHEAP_SUPERNET = ["supernet.criterion=flap", "supernet.compensation=bias"]  # FLAP needs no Gram matrix
SHORT_SEARCH = ["search.trials=8", "search.offspring=4", "search.stage_tokens=[64,128,256]", "search.survivors=[2,1,1]"]
SMALL_DATA = ["data.seq_len=32", "data.calib_sequences=4", "data.eval_seq_len=32", "data.eval_sequences=4"]

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


def layout_dir(name: str, tokenizer_dir: Path, out: Path, **overrides) -> Path:
    """A random 2-layer model in layout ``name`` (residual 64, vocabulary 512; ``overrides``: other config
    fields), with the tiny tokenizer."""
    torch.manual_seed(0)
    config = layout_config(name, layers=2, vocab=512, hidden=64, **overrides)
    AutoModelForCausalLM.from_config(config).save_pretrained(out)
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / file, out / file)
    return out


def prune_layouts(names: list[str], tokenizer_dir: Path, root: Path, extra: dict[str, list[str]],
                  fields: dict[str, dict] | None = None) -> dict[str, Path]:  # fmt: skip
    """``strata`` on each layout, on a few windows of Python source, with ``SHORT_SEARCH`` and the
    per-layout ``extra`` overrides (``fields``: per-layout config fields of the model); returns layout -> run
    directory."""
    text = root / "calib.txt"
    text.write_text((Path(json.__file__).parent / "decoder.py").read_text() * 3)
    out = {}
    for name in names:
        model = layout_dir(name, tokenizer_dir, root / name, **(fields or {}).get(name, {}))
        run_dir = root / f"run-{name}"
        args = [f"model.path={model}", "data.source=text", f"data.path={text}", *SMALL_DATA, "progress=false",
                f"hydra.run.dir={run_dir}", *SHORT_SEARCH, *extra.get(name, [])]  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", "search.app.cli", *args], capture_output=True, text=True,
                              check=False)  # fmt: skip
        assert proc.returncode == 0, f"{name}: {proc.stderr[-3000:]}"
        out[name] = run_dir
    return out


def reload_without_strata(runs: dict[str, Path]) -> dict[str, dict]:
    """Each run's ``model/`` loaded and generating in a fresh process outside the repository."""
    names = sorted(runs)
    proc = subprocess.run([sys.executable, "-c", RELOAD, *(str(runs[n] / "model") for n in names)],
                          capture_output=True, text=True, check=False, cwd="/")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {name: json.loads(line) for name, line in zip(names, proc.stdout.strip().splitlines(), strict=True)}
