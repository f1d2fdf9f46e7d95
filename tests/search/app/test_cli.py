"""The ``strata`` app end to end on the tiny reference model, and every bad input's one-line error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from layout_runs import layout_dir

# the defaults (search=evo, obs + refit_intercept), with the search cut to a few trials on few tokens
TINY = [
    "model.reference=tiny",
    "data.seq_len=64",
    "data.calib_sequences=4",
    "data.eval_seq_len=64",
    "data.eval_sequences=4",
    "progress=false",
    "search.trials=8",
    "search.offspring=4",
    "search.stage_tokens=[128,256,512]",
    "search.survivors=[2,1,1]",
]


def strata(args: list[str], run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "search.app.cli", *args, f"hydra.run.dir={run_dir}"],
        capture_output=True,
        text=True,
        check=False,
    )


def strata_in_process(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``strata ARGV`` run by its console entry in this process (no interpreter start, no torch import: a second
    each instead of five); the root logger's handlers, which Hydra's job logging replaces, are put back after."""
    import logging

    from search.app.cli import main

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    monkeypatch.setattr(sys, "argv", ["strata", *argv])
    try:
        with pytest.raises(SystemExit) as stop:
            main()
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    return stop.value.code


def table_rows(stdout: str) -> dict[str, list[str]]:
    """The rows of the closing table (search/app/outcome.py): name -> [params, ppl, x dense]."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split() == ["params", "ppl", "x", "dense"]) + 1
    end = next(i for i, line in enumerate(lines) if line.startswith("run directory: "))
    return {line.split()[0]: line.split()[1:] for line in lines[start:end]}


def test_run_ends_with_the_table_of_dense_baselines_and_searched(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "metrics.json").read_text())
    stdout = (finished_run / "stdout.txt").read_text()
    rows = table_rows(stdout)
    assert list(rows) == ["dense", "uniform", "flap_global", "searched"]
    assert rows["searched"][:2] == [f"{metrics['pruned']['params']:,}", f"{metrics['pruned']['ppl']:.2f}"]
    assert rows["flap_global"][1] == f"{metrics['baselines']['flap_global']['ppl']:.2f}"
    assert f"run directory: {finished_run}" in stdout


def test_search_none_is_the_one_flag_way_to_no_search(tiny_reference_dir: Path, tmp_path: Path) -> None:
    proc = strata([*TINY, "search=none"], tmp_path / "run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["allocation"] == "uniform" and "search" not in metrics and "baselines" not in metrics
    assert not (tmp_path / "run" / "study.journal").exists()
    assert list(table_rows(proc.stdout)) == ["dense", "uniform"]


@pytest.fixture(scope="module")
def finished_run(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    proc = strata([*TINY, "budget.keep=0.5"], run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(run_dir) in proc.stdout
    (run_dir / "stdout.txt").write_text(proc.stdout)
    return run_dir


def test_run_writes_metrics_allocation_and_model(finished_run: Path) -> None:
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["model"] == "strata-reference-tiny"
    budget = metrics["budget"]
    assert (budget["kind"], budget["keep"]) == ("block_params", 0.5)
    assert budget["target_cost"] - budget["slack"] < budget["cost"] <= budget["target_cost"]
    assert budget["cost"] < metrics["pruned"]["block_params"]  # blocks also hold norms
    assert metrics["allocation"] == "search"  # bare strata searches
    assert (metrics["supernet"]["criterion"], metrics["supernet"]["compensation"]) == ("obs", "refit_intercept")
    search = metrics["search"]
    assert (search["sampler"], search["proxy"], search["fitness"]) == ("evo", "kl", "held_apart")
    assert search["trials"] >= 8 and search["fitness_windows"] == 512 // 64
    baselines = metrics["baselines"]
    assert set(baselines) == {"uniform", "flap_global"}
    for entry in baselines.values():
        assert entry["ppl"] > 1.0 and entry["params"] < metrics["dense"]["params"]
    flap = baselines["flap_global"]
    assert flap["method"].startswith("FLAP") and set(flap["approximated"]) >= {"rule", "units_moved"}
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
    proc = subprocess.run(
        [sys.executable, "-c", code, str(finished_run / "model")], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert int(proc.stdout.strip().splitlines()[-1]) == metrics["pruned"]["params"]


def test_tokenizer_reloads_with_the_training_ids(finished_run: Path, tiny_reference_dir: Path) -> None:
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    from supernet.io.reference.corpus import corpus_texts

    text = corpus_texts("eval", max_chars=4000)[0][:4000]
    trained = Tokenizer.from_file(str(tiny_reference_dir / "tokenizer.json")).encode(text).ids
    for directory in (tiny_reference_dir, finished_run / "model"):
        assert AutoTokenizer.from_pretrained(directory)(text)["input_ids"] == trained


def test_tokenizer_and_config_load_without_remote_code_or_a_prompt(finished_run: Path) -> None:
    """AutoTokenizer reads config.json first: it names the family, so nothing asks to run custom code."""
    code = (
        "import sys; from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer;"
        "d = sys.argv[1]; t = AutoTokenizer.from_pretrained(d); c = AutoConfig.from_pretrained(d);"
        "m = AutoModelForCausalLM.from_pretrained(d, trust_remote_code=True);"
        "print(type(c).__name__, type(m).__name__, len(t('def f(): pass')['input_ids']) > 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(finished_run / "model")], capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL, cwd="/", timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-3:] == ["LlamaConfig", "StrataForCausalLM", "True"]
    assert "custom code" not in proc.stdout + proc.stderr and "instantiate a model of type" not in proc.stderr


def test_a_pruned_model_is_refused_as_input(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [*TINY, "data.source=builtin", f"model.path={finished_run / 'model'}", f"hydra.run.dir={tmp_path / 'run'}"]
    status, stderr = strata_in_process(args, monkeypatch), capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "already pruned" in lines[0]


def _corrupt_copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    weights = next(dst.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:100])
    return dst


def _text(tmp: Path, data: bytes) -> list[str]:
    (tmp / "text.txt").write_bytes(data)
    return ["data.source=text", f"data.path={tmp / 'text.txt'}"]


def _config_copy(src: Path, tmp: Path, *, model_type: str | None = None, text: str | None = None) -> Path:
    """The model with its config.json naming another model type, or holding ``text``."""
    dst = tmp / "model"
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["model_type"] = model_type
    (dst / "config.json").write_text(text if text is not None else json.dumps(config))
    return dst


def _without_blocks(src: Path, tmp: Path) -> Path:
    """The model with every decoder layer's tensors gone from its safetensors file."""
    from safetensors.torch import load_file, save_file

    dst = tmp / "model"
    shutil.copytree(src, dst)
    weights = next(dst.glob("*.safetensors"))
    tensors = {k: v for k, v in load_file(weights).items() if ".layers." not in k}
    save_file(tensors, weights, metadata={"format": "pt"})
    return dst


def _without_tokenizer(src: Path, tmp: Path) -> Path:
    dst = tmp / "model"
    shutil.copytree(src, dst)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (dst / name).unlink(missing_ok=True)
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
    "unknown_model_type": (lambda tmp, ref: [*BUILTIN, "model.path=" + str(_config_copy(ref, tmp, model_type="nope"))],
                           "config.json cannot be read"),
    "config_not_json": (lambda tmp, ref: [*BUILTIN, "model.path=" + str(_config_copy(ref, tmp, text="{llama"))],
                        "config.json cannot be read"),
    "missing_block_tensors": (lambda tmp, ref: [*BUILTIN, "model.path=" + str(_without_blocks(ref, tmp))], "lack"),
    "no_tokenizer_files": (lambda tmp, ref: [*BUILTIN, "model.path=" + str(_without_tokenizer(ref, tmp))],
                           "could not load a tokenizer"),
    "binary_text": (lambda tmp, ref: _text(tmp, b"\xff\xfe\x00"), "not UTF-8"),
    "text_shorter_than_a_window": (lambda tmp, ref: _text(tmp, b"0123456789"), "lower data.eval_seq_len"),
    "positions_beyond_the_model": (lambda tmp, ref: ["data.eval_seq_len=1024"], "beyond the model's 512 positions"),
    "device_bogus": (lambda tmp, ref: ["device=bogus"], "not a torch device"),
    "device_cuda_without_gpu": (lambda tmp, ref: ["device=cuda"], "no CUDA"),
    "key_added_with_plus": (lambda tmp, ref: ["+foo.bar=1"], "unknown config key foo"),
    "unknown_search": (lambda tmp, ref: ["search=bogus"], "use one of cmaes, evo, none"),
    "obs_without_its_update": (lambda tmp, ref: ["supernet.compensation=none"],
                               "supernet.compensation=refit_intercept|refit"),
    "unknown_compensation": (lambda tmp, ref: ["supernet.compensation=lora"], "supernet.compensation='lora'"),
    "unknown_propagation": (lambda tmp, ref: ["supernet.propagate=sideways"], "supernet.propagate"),
    "unknown_fitness_windows": (lambda tmp, ref: ["search.fitness=train"], "search.fitness='train'"),
    "resample_with_workers": (lambda tmp, ref: ["search.resample=true", "search.workers=2"], "search.workers=1"),
    "survivors_per_stage": (lambda tmp, ref: ["search.survivors=[1,1]"], "one entry per stage"),
    "gguf_without_route": (lambda tmp, ref: [*BUILTIN, "model.path=" + str(layout_dir("qwen3-0.6b", ref, tmp / "q3")),
                                             "export.gguf=true"], "no llama.cpp route for qwen3"),
    "no_window_for_fitness": (lambda tmp, ref: [*_text(tmp, b"x = 1\n" * 400), "data.calib_sequences=64"],
                              "search.fitness=calibration"),
}  # fmt: skip


# refused by the config's own checks, before a model loads: checked in process (search.app.cli.validate, what
# ``strata`` runs first), a second each instead of a whole process; unknown_key also goes through ``strata`` itself
CONFIG_ERRORS = ("bad_value", "device_bogus", "keep_above_one", "keep_zero", "key_added_with_plus",
                 "obs_without_its_update", "resample_with_workers", "survivors_per_stage", "unknown_compensation",
                 "unknown_fitness_windows", "unknown_key", "unknown_propagation", "unknown_search", "unknown_source",
                 "user_model_without_data", "zero_level_fraction")  # fmt: skip


@pytest.mark.parametrize("case", CONFIG_ERRORS)
def test_a_bad_config_is_refused_before_the_model_loads(
    case: str, tiny_reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from search.app.cli import validate
    from search.app.config import register_configs

    make_args, expected = BAD_INPUTS[case]
    run_dir = tmp_path / "run"
    register_configs()
    with pytest.raises(SystemExit) as stop:
        validate("strata", [*TINY, *make_args(tmp_path, tiny_reference_dir), f"hydra.run.dir={run_dir}"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert stop.value.code == 2 and len(lines) == 1 and expected in lines[0], lines
    assert not run_dir.exists()


@pytest.mark.parametrize("case", sorted(set(BAD_INPUTS) - set(CONFIG_ERRORS) | {"unknown_key"}))
def test_bad_input_is_one_line_error_with_status_2(
    case: str, tiny_reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_args, expected = BAD_INPUTS[case]
    run_dir = tmp_path / "run"
    status = strata_in_process([*TINY, *make_args(tmp_path, tiny_reference_dir), f"hydra.run.dir={run_dir}"],
                               monkeypatch)  # fmt: skip
    stderr = capsys.readouterr().err
    assert status == 2, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and expected in lines[0], stderr[-2000:]
    assert "Traceback" not in stderr
    for output in ("model", "metrics.json", "allocation.json"):
        assert not (run_dir / output).exists()


def test_an_output_directory_that_cannot_be_created_is_one_line(
    tiny_reference_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    status = strata_in_process([*TINY, f"hydra.run.dir={blocker / 'run'}"], monkeypatch)
    stderr = capsys.readouterr().err
    assert status == 2 and "Traceback" not in stderr, stderr[-2000:]
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and f"{blocker} is a file" in lines[0]


def test_a_finished_run_directory_is_refused_unless_overwrite(
    finished_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = (finished_run / "metrics.json").read_bytes()
    status = strata_in_process([*TINY, "budget.keep=0.7", f"hydra.run.dir={finished_run}"], monkeypatch)
    stderr = capsys.readouterr().err
    assert status == 2 and stderr.count("error: ") == 1 and "overwrite=true" in stderr
    assert (finished_run / "metrics.json").read_bytes() == before
    copy = tmp_path / "run"
    shutil.copytree(finished_run, copy)
    proc = strata([*TINY, "budget.keep=0.7", "overwrite=true"], copy)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((copy / "metrics.json").read_text())
    recorded = (copy / ".hydra" / "config.yaml").read_text()
    assert metrics["budget"]["keep"] == 0.7 and "keep: 0.7" in recorded  # the config says what the outputs are
