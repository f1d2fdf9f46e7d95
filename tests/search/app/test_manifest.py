"""manifest.json: its entries, its hashes, and the same entries on the run's studies."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import torch
from optuna.storages.journal import JournalFileBackend

from search.app.config import RunConfig
from search.app.manifest import (
    MANIFEST,
    build_manifest,
    config_hash,
    finish_manifest,
    git_state,
    write_manifest,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_manifest_has_every_entry() -> None:
    tokens = torch.arange(64).reshape(4, 16)
    start = build_manifest(RunConfig(seed=7), started=1_700_000_000.0, calib=tokens)
    manifest = finish_manifest(start, started=1_700_000_000.0, ended=1_700_000_090.5)
    assert manifest == {**start, "ended": "2023-11-14T22:14:50+00:00", "seconds": 90.5}
    assert set(manifest) == {"git", "packages", "config_hash", "data", "seed", "device", "started", "ended", "seconds"}
    assert manifest["seed"] == 7 and manifest["seconds"] == 90.5
    assert manifest["started"] == "2023-11-14T22:13:20+00:00"
    assert manifest["packages"]["python"] and manifest["packages"]["torch"] == torch.__version__
    assert manifest["packages"]["optuna"] == optuna.__version__
    assert manifest["device"]["torch"] == "cpu" and manifest["device"]["gpu"] is None
    data = manifest["data"]
    assert data["source"] == "builtin" and len(data["corpus_sha1"]) == 40  # the built-in corpus is used
    assert len(data["calib_tokens_sha256"]) == 64 and data["eval_tokens_sha256"] is None
    json.dumps(manifest)  # JSON as it is: it also goes into Optuna user attributes


def test_hashes_follow_their_inputs() -> None:
    assert config_hash(RunConfig()) == config_hash(RunConfig())
    assert config_hash(RunConfig()) != config_hash(RunConfig(seed=1))
    a = build_manifest(RunConfig(), started=0.0, calib=torch.zeros(2, 8, dtype=torch.long))["data"]
    b = build_manifest(RunConfig(), started=0.0, calib=torch.ones(2, 8, dtype=torch.long))["data"]
    assert a["calib_tokens_sha256"] != b["calib_tokens_sha256"]


def test_git_state_of_this_checkout() -> None:
    state = git_state()
    assert set(state) == {"revision", "dirty"}
    assert state["revision"] is None or len(state["revision"]) == 40


def test_write_manifest_sets_the_entries_on_every_study_of_the_run(tmp_path: Path) -> None:
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    for name in ("strata", "strata-it1", "other"):
        optuna.create_study(study_name=name, storage=storage)
    iterations = [{"iteration": 0, "study": "strata"}, {"iteration": 1, "study": "strata-it1"}]
    (tmp_path / "metrics.json").write_text(json.dumps({"search": {"iterations": iterations}}))
    manifest = build_manifest(RunConfig(), started=0.0)
    path = write_manifest(tmp_path, manifest)
    assert path == tmp_path / MANIFEST and json.loads(path.read_text()) == manifest
    for name in ("strata", "strata-it1"):
        assert optuna.load_study(study_name=name, storage=storage).user_attrs == manifest
    assert optuna.load_study(study_name="other", storage=storage).user_attrs == {}


def test_a_run_without_search_writes_only_the_file(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"allocation": "uniform"}))
    write_manifest(tmp_path, build_manifest(RunConfig(), started=0.0))
    assert (tmp_path / MANIFEST).is_file() and not (tmp_path / "study.journal").exists()


def test_the_manifest_is_built_once_per_run(tiny_reference_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """git and the corpus hash are read once: the studies get the start entries, manifest.json the end too."""
    from search.app import manifest as manifest_module
    from search.app.run import run
    from search.driver import SearchConfig
    from supernet.io.data import DataConfig
    from supernet.io.loading import ModelConfig

    calls = []
    monkeypatch.setattr(manifest_module, "git_state", lambda: calls.append(1) or {"revision": None, "dirty": None})
    data = DataConfig(seq_len=64, calib_sequences=8, eval_seq_len=64, eval_sequences=4)
    cfg = RunConfig(model=ModelConfig(reference="tiny"), data=data, progress=False,
                    search=SearchConfig(trials=4, offspring=2, stage_tokens=[64], survivors=[1]))  # fmt: skip
    run(cfg, tmp_path)
    assert len(calls) == 1
    written = json.loads((tmp_path / MANIFEST).read_text())
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    attrs = optuna.load_study(study_name="strata", storage=storage).user_attrs
    timing = ("ended", "seconds")
    assert {k: v for k, v in written.items() if k not in timing} == {k: attrs[k] for k in written if k not in timing}
    assert written["ended"] == attrs["ended"]
