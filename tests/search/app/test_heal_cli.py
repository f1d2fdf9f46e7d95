"""strata-heal end to end on the tiny reference model's run, heal in a run (``heal.tokens > 0``), and every bad
input's one ``error:`` line with exit status 2 and nothing written."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForCausalLM

from search.app.export import export_run
from search.app.heal import main

KEYS = ["seq_len=64", "batch_tokens=1024", "micro_batch=8", "lr=1e-3", "eval_every=1"]


def copy_run(healed_run: Path, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    shutil.copytree(healed_run, run_dir)
    return run_dir


def test_a_run_with_heal_tokens_heals_model_into_healed(healed_run: Path) -> None:
    metrics = json.loads((healed_run / "metrics.json").read_text())
    heal = metrics["heal"]
    assert (heal["tokens"], heal["steps"], heal["method"], heal["teacher"]) == (2048, 2, "full", "live")
    assert [e["step"] for e in heal["evals"]] == [0, 1, 2] and [c["step"] for c in heal["curve"]] == [1, 2]
    assert heal["ppl_before"] == pytest.approx(metrics["pruned"]["ppl"], rel=1e-4)
    assert heal["dense_ppl"] == metrics["dense"]["ppl"] and heal["ppl_after"] == heal["evals"][-1]["ppl"]
    assert heal["tokens_per_s"] > 0 and heal["config"]["tokens"] == 2048
    assert (healed_run / "healed" / "model.safetensors").is_file() and not (healed_run / "heal-state").exists()
    record = json.loads((healed_run / ".strata-outputs.json").read_text())["outputs"]
    assert "model.safetensors" in record["healed"] and "heal-state" not in record
    assert 'id="chart-heal"' in (healed_run / "report.html").read_text()


def test_strata_heal_writes_healed_metrics_and_the_end_row(strata_healed: tuple[Path, str], tmp_path: Path) -> None:
    run_dir, stdout = strata_healed
    rows = {line.split("  ")[0]: line.split() for line in stdout.splitlines()}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert rows["uniform + healed"][-2] == f"{metrics['heal']['ppl_after']:.2f}"
    assert (metrics["heal"]["method"], metrics["heal"]["steps"], metrics["heal"]["tokens"]) == ("full", 4, 4096)
    assert [e["step"] for e in metrics["heal"]["evals"]] == [0, 4]  # eval_every=0: before and after
    # healed/ reloads without strata's classes, with model/'s shapes, and exports to GGUF
    healed = AutoModelForCausalLM.from_pretrained(run_dir / "healed", trust_remote_code=True)
    pruned = AutoModelForCausalLM.from_pretrained(run_dir / "model", trust_remote_code=True)
    assert {k: v.shape for k, v in healed.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}
    ids = torch.arange(1, 33)[None]
    assert not torch.equal(healed(ids).logits, pruned(ids).logits)
    assert export_run(run_dir / "healed", out=tmp_path / "healed.gguf", progress=False).stat().st_size > 0
    assert not (run_dir / "heal-state").exists()


def listing(run_dir: Path) -> dict[str, int]:
    """Every path and its mtime, but the lock (which holds the PID of the last strata process in the directory)."""
    return {str(p.relative_to(run_dir)): p.stat().st_mtime_ns for p in sorted(run_dir.rglob("*"))
            if p.name != ".strata.lock"}  # fmt: skip


def edit_config(run_dir: Path, **changes) -> None:
    path = run_dir / ".hydra" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        section, key = dotted.split("__")
        config[section][key] = value
    path.write_text(yaml.safe_dump(config))


def unwritable(*args, **kwargs):
    raise PermissionError(13, "Permission denied")


@pytest.mark.parametrize(
    ("case", "args", "message"),
    [
        ("no model", ["tokens=1024"], "holds no model/"),
        ("dense gone", ["tokens=1024"], "is gone"),
        ("tokens", ["tokens=0"], "heal.tokens=0"),
        ("tokens", ["tokens=-5"], "heal.tokens=-5"),
        ("lr", ["tokens=1024", "lr=0"], "heal.lr=0.0 must be > 0"),
        ("short text", ["tokens=1024", "batch_tokens=65536"], "fewer than one step's 1024"),
        ("unwritable", ["tokens=1024"], "cannot be written"),
        ("unknown key", ["tokens=1024", "heal.tokenz=5"], "bad heal key"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_written(healed_run: Path, tmp_path: Path, capsys, monkeypatch,
                                                         case: str, args: list[str], message: str) -> None:  # fmt: skip
    run_dir = copy_run(healed_run, tmp_path)
    if case == "no model":
        shutil.rmtree(run_dir / "model")
    elif case == "dense gone":
        edit_config(run_dir, model__path=str(tmp_path / "moved-away"), data__source="jsonl")
    elif case == "unwritable":
        monkeypatch.setattr(tempfile, "mkstemp", unwritable)
    before = listing(run_dir)
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir), *[a for a in KEYS if a.split("=")[0] not in {x.split("=")[0] for x in args}], *args,
              "--quiet"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert listing(run_dir) == before
