"""Evaluation on a run of the tiny reference model: ``eval.tasks`` in the run and ``strata-eval`` afterwards write
eval.json (every model, value and stderr), record it in manifest.json and report.html, print the table; user
errors are one ``error:`` line with nothing written; lm-eval scores the searched model as strata's forward does."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from search.app.config import RunConfig
from search.app.eval import main
from search.driver import SearchConfig
from search.evaluate.config import EvalConfig
from supernet.io.data import DataConfig
from supernet.io.loading import ModelConfig

TASKS = ["strata_nextline", "strata_heldout_ppl"]
MODELS = ["dense", "uniform", "flap_global", "searched"]


def tiny_config() -> RunConfig:
    """The tiny reference model at keep 0.5, a short search, both shipped tasks on 4 documents."""
    return RunConfig(
        model=ModelConfig(reference="tiny"),
        data=DataConfig(seq_len=64, calib_sequences=4, eval_seq_len=64, eval_sequences=4),
        search=SearchConfig(trials=8, offspring=4, stage_tokens=[128, 256, 512], survivors=[2, 1, 1]),
        eval=EvalConfig(tasks=TASKS, limit=4),
        progress=False,
    )


@pytest.fixture(scope="module")
def run_dir(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run that evaluated itself, with .hydra/config.yaml as the strata app records it."""
    from omegaconf import OmegaConf

    from search.app.run import run

    out = tmp_path_factory.mktemp("eval-run")
    cfg = tiny_config()
    run(cfg, out)
    (out / ".hydra").mkdir()
    OmegaConf.save(OmegaConf.structured(cfg), out / ".hydra" / "config.yaml")
    return out


def test_the_run_writes_eval_json_for_every_model_before_metrics(run_dir: Path) -> None:
    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert evaluation["models"] == MODELS and evaluation["settings"]["tasks"] == TASKS
    accuracy = evaluation["results"]["strata_nextline"]["acc"]
    assert set(accuracy) == set(MODELS)
    assert all(0 <= v["value"] <= 1 and v["stderr"] > 0 for v in accuracy.values())
    bpb = evaluation["results"]["strata_heldout_ppl"]["bits_per_byte"]
    assert bpb["dense"]["value"] < bpb["flap_global"]["value"]  # pruning costs bits per byte
    assert evaluation["samples"] == {"strata_nextline": 4, "strata_heldout_ppl": 4}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["eval"] == {k: evaluation[k] for k in ("lm_eval", "settings", "task_hashes")}
    assert set(evaluation["task_hashes"]) == set(TASKS)
    record = json.loads((run_dir / ".strata-outputs.json").read_text())["outputs"]
    assert record["eval.json"] == "whole"
    assert (run_dir / "eval.json").stat().st_mtime_ns <= (run_dir / "metrics.json").stat().st_mtime_ns
    report = (run_dir / "report.html").read_text()
    assert "Evaluation: lm-evaluation-harness" in report and 'id="chart-eval"' in report


def test_strata_eval_rebuilds_the_baselines_and_prints_the_table(run_dir: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "eval.json").unlink()
    main([str(copy), "--tasks", "strata_nextline", "--limit", "4", "--quiet"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["task", "metric", *MODELS, "uniform/dense", "flap_global/dense", "searched/dense"]
    assert [line.split()[:2] for line in out[1:3]] == [["strata_nextline", "acc"], ["strata_nextline", "acc_norm"]]
    again = json.loads((copy / "eval.json").read_text())["results"]["strata_nextline"]
    first = json.loads((run_dir / "eval.json").read_text())["results"]["strata_nextline"]
    assert again == first  # the rebuilt baselines and the reloaded searched model score as in the run
    assert json.loads((copy / "manifest.json").read_text())["eval"]["settings"]["tasks"] == ["strata_nextline"]


def one_error(capsys, argv: list[str], expected: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert exit_info.value.code == 2 and len(errors) == 1 and expected in errors[0], err


def test_user_errors_are_one_line_and_write_nothing(run_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "eval.json").unlink()
    before = sorted(p.name for p in copy.iterdir())
    bad = tmp_path / "tasks"
    bad.mkdir()
    (bad / "gone.yaml").write_text("task: gone\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: "
                                   f"{tmp_path / 'nothing.jsonl'}\noutput_type: loglikelihood_rolling\ntest_split: "
                                   "test\ndoc_to_text: ''\ndoc_to_target: text\n")  # fmt: skip
    one_error(capsys, [str(copy), "--tasks", "gone", "--include-path", str(bad)], "task gone: its data is not present")
    one_error(capsys, [str(copy), "--tasks", "strata_nextline", "--include-path", str(tmp_path / "no")], "no folder")
    one_error(capsys, [str(tmp_path), "--tasks", "strata_nextline"], "holds no metrics.json")
    one_error(capsys, [str(copy), "--tasks", "strata_nextline", "--limit", "0"], "eval.limit=0.0 must be > 0")
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    one_error(capsys, [str(copy), "--tasks", "strata_nextline"], 'pip install -e ".[eval]"')
    assert sorted(p.name for p in copy.iterdir()) == before


def test_lm_eval_scores_the_searched_model_as_strata_forward_does(run_dir: Path) -> None:
    """Per token, on strata's own held-out windows: lm-eval's log-likelihood of each next token given its prefix
    equals the log-softmax of one forward of the window (whose mean is strata's held-out perplexity), within 1e-4;
    and lm-eval encodes text as the model's tokenizer does."""
    from search.app.inputs import eval_tokens
    from search.evaluate.harness import harness_model
    from supernet.io.export.load import load_pruned
    from supernet.io.perplexity import perplexity

    model, tokenizer = load_pruned(run_dir / "model", dtype="float32", device="cpu")
    windows = eval_tokens(tiny_config().data, tokenizer)[:2, :32]  # [2, 32]
    with torch.no_grad():
        logits = model(input_ids=windows).logits[:, :-1].double()  # [2, 31, vocab]
    strata = -F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")  # [2, 31]
    lm = harness_model(model, tokenizer, batch_size=16)
    requests = [(("", ""), w[:t].tolist(), [int(w[t])]) for w in windows for t in range(1, w.shape[0])]
    harness = torch.tensor([ll for ll, _ in lm._loglikelihood_tokens(requests, disable_tqdm=True)]).view(2, 31)
    torch.testing.assert_close(harness.double(), strata, atol=1e-4, rtol=0)
    assert perplexity(model, windows, progress=False) == pytest.approx(math.exp(-strata.mean().item()), rel=1e-5)
    text = (Path(json.__file__).parent / "decoder.py").read_text()[:2000]
    assert lm.tok_encode(text, add_special_tokens=False) == tokenizer(text, add_special_tokens=False)["input_ids"]
