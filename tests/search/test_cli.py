"""The ``strata`` app end to end on the tiny reference model, and every bad input's one-line error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TINY = ["model.reference=tiny", "data.seq_len=64", "data.calib_sequences=4", "data.eval_seq_len=64",
        "data.eval_sequences=4", "progress=false"]


def strata(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.cli", *args, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def finished_run(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    proc = strata([*TINY, "budget.keep=0.5"], run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(run_dir) in proc.stdout
    return run_dir


def test_run_writes_metrics_allocation_and_model(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["model"] == "strata-reference-tiny"
    budget = metrics["budget"]
    assert (budget["kind"], budget["keep"]) == ("block_params", 0.5)
    assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"]
    assert budget["cost"] < metrics["pruned"]["block_params"]  # blocks also hold norms
    assert metrics["allocation"] == "uniform"
    for side in ("dense", "pruned"):
        assert set(metrics[side]) >= {"params", "block_params", "ppl"}
        assert metrics[side]["ppl"] > 1.0
    assert metrics["pruned"]["block_params"] < metrics["dense"]["block_params"]
    layers = json.loads((finished_run / "allocation.json").read_text())["layers"]
    assert len(layers) == 2
    for entry in layers:
        assert 0 <= entry["attn_units"] <= entry["attn_units_total"]
        assert 0 <= entry["mlp_units"] <= entry["mlp_units_total"]
    assert (finished_run / ".hydra" / "config.yaml").is_file()


def test_saved_model_has_the_reported_parameter_count(finished_run: Path) -> None:
    code = (
        "import sys; from transformers import AutoModelForCausalLM;"
        "m = AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True);"
        "print(sum(p.numel() for p in m.parameters()))"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(finished_run / "model")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert int(proc.stdout.strip().splitlines()[-1]) == metrics["pruned"]["params"]


def test_tokenizer_reloads_with_the_training_ids(finished_run: Path, tiny_reference_dir: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from supernet.reference.corpus import corpus_texts

    text = corpus_texts("eval", max_chars=4000)[0][:4000]
    trained = Tokenizer.from_file(str(tiny_reference_dir / "tokenizer.json")).encode(text).ids
    for directory in (tiny_reference_dir, finished_run / "model"):
        assert AutoTokenizer.from_pretrained(directory)(text)["input_ids"] == trained


def _corrupt_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    weights = next(dst.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    return dst


def _gpt2_dir(dst: Path) -> Path:
    from transformers import GPT2Config

    dst.mkdir()
    GPT2Config(n_layer=1, n_embd=16, n_head=2).save_pretrained(dst)
    (dst / "model.safetensors").write_bytes(b"")
    return dst


BUILTIN = ["data.source=builtin"]  # a user model must name its calibration text
BAD_INPUTS = {
    "missing_path": (lambda tmp, ref: [*BUILTIN, "model.path=" + str(tmp / "nope")], "is not a directory"),
    "unknown_arch": (
        lambda tmp, ref: [*BUILTIN, "model.path=" + str(_gpt2_dir(tmp / "gpt2"))],
        "unsupported architecture",
    ),
    "corrupt_weights": (
        lambda tmp, ref: [*BUILTIN, "model.path=" + str(_corrupt_copy(ref, tmp / "corrupt"))],
        "not a readable safetensors",
    ),
    "user_model_without_data": (lambda tmp, ref: ["model.path=" + str(ref)], "needs calibration text"),
    "quantum_wider_than_mlp": (lambda tmp, ref: ["supernet.channel_quantum=256"], "supernet.channel_quantum=256"),
    "attn_step_wider_than_attention": (lambda tmp, ref: ["supernet.attn_step=3"], "supernet.attn_step=3"),
    "zero_level_fraction": (lambda tmp, ref: ["supernet.level_fraction=0"], "supernet.level_fraction"),
    "keep_zero": (lambda tmp, ref: ["budget.keep=0"], "outside (0, 1]"),
    "keep_above_one": (lambda tmp, ref: ["budget.keep=1.5"], "outside (0, 1]"),
    "unreachable_budget": (lambda tmp, ref: ["budget.keep=0.0001"], "keep"),
    "empty_data_file": (
        lambda tmp, ref: ["data.source=text", "data.path=" + str((tmp / "empty.txt", (tmp / "empty.txt").touch())[0])],
        "empty",
    ),
    "unknown_key": (lambda tmp, ref: ["colour=blue"], "colour"),
    "bad_value": (lambda tmp, ref: ["budget.keep=half"], "half"),
    "unknown_source": (lambda tmp, ref: ["data.source=web"], "data.source"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_one_line_error_with_status_2(case: str, tiny_reference_dir: Path, tmp_path: Path) -> None:
    make_args, expected = BAD_INPUTS[case]
    run_dir = tmp_path / "run"
    proc = strata([*TINY, *make_args(tmp_path, tiny_reference_dir)], run_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for output in ("model", "metrics.json", "allocation.json"):
        assert not (run_dir / output).exists()
