"""The shipped tasks: generated once into strata's cache from the held-out split, each YAML naming its data file."""

from __future__ import annotations

import json

import yaml

from search.evaluate.shipped import SHIPPED, shipped_tasks_dir


def test_the_shipped_tasks_are_written_once_and_name_their_local_data(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STRATA_CACHE_DIR", str(tmp_path))
    folder = shipped_tasks_dir()
    assert folder.parent == tmp_path / "eval-tasks"
    for name in SHIPPED:
        config = yaml.safe_load((folder / f"{name}.yaml").read_text())
        assert config["task"] == name and config["dataset_path"] == "json"
        data = config["dataset_kwargs"]["data_files"]["test"]
        assert data == str(folder / f"{name}.jsonl")
        docs = [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]
        assert len(docs) >= 50
    nextline = yaml.safe_load((folder / "strata_nextline.yaml").read_text())
    assert (nextline["output_type"], nextline["target_delimiter"]) == ("multiple_choice", "")
    assert yaml.safe_load((folder / "strata_heldout_ppl.yaml").read_text())["output_type"] == "loglikelihood_rolling"
    stamp = (folder / "strata_nextline.jsonl").stat().st_mtime_ns
    assert shipped_tasks_dir() == folder and (folder / "strata_nextline.jsonl").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in (tmp_path / "eval-tasks").iterdir()) == [folder.name]  # no temporaries left
