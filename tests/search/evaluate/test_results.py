"""eval.json from lm-eval's results dicts, and the table with each model's ratio to dense."""

from __future__ import annotations

import pytest

from search.evaluate.results import build_eval, metric_name, table
from supernet.io.files import json_hash as config_hash


def raw(acc: float, bpb: float) -> dict:
    """What ``lm_eval.simple_evaluate`` returns for one multiple-choice and one rolling task (the parts read)."""
    return {
        "results": {
            "mc": {"alias": "mc", "acc,none": acc, "acc_stderr,none": 0.02, "acc_norm,none": acc + 0.1,
                   "acc_norm_stderr,none": 0.03},
            "ppl": {"alias": "ppl", "bits_per_byte,none": bpb, "bits_per_byte_stderr,none": "N/A"},
        },
        "configs": {"mc": {"task": "mc", "num_fewshot": 0}, "ppl": {"task": "ppl", "num_fewshot": 0}},
        "n-samples": {"mc": {"original": 400, "effective": 8}, "ppl": {"original": 56, "effective": 8}},
    }  # fmt: skip


def test_metric_names_drop_the_none_filter_and_skip_stderr_keys() -> None:
    assert metric_name("acc,none") == ("acc", "acc_stderr,none")
    assert metric_name("exact_match,strict-match") == ("exact_match (strict-match)", "exact_match_stderr,strict-match")
    assert metric_name("acc_stderr,none") is None and metric_name("alias") is None


def test_eval_json_holds_value_and_stderr_per_task_metric_and_model() -> None:
    per_model = {"dense": {"t": raw(0.5, 1.2)}, "searched": {"t": raw(0.4, 1.5)}}
    out = build_eval(per_model, version="0.4.13", settings={"limit": 8})
    assert out["models"] == ["dense", "searched"] and out["lm_eval"] == "0.4.13"
    assert out["results"]["mc"]["acc"]["searched"] == {"value": 0.4, "stderr": 0.02}
    assert out["results"]["mc"]["acc_norm"]["dense"]["value"] == pytest.approx(0.6)
    assert out["results"]["ppl"]["bits_per_byte"]["dense"] == {"value": 1.2, "stderr": None}  # "N/A" -> null
    assert out["samples"] == {"mc": 8, "ppl": 8}
    assert out["task_hashes"]["mc"] == config_hash({"num_fewshot": 0, "task": "mc"}) != out["task_hashes"]["ppl"]


def test_the_table_gives_each_model_and_its_ratio_to_dense() -> None:
    out = build_eval({"dense": {"t": raw(0.5, 1.2)}, "searched": {"t": raw(0.4, 1.5)}}, version="x", settings={})
    lines = table(out).splitlines()
    assert lines[0].split() == ["task", "metric", "dense", "searched", "searched/dense"]
    assert lines[1].split() == ["mc", "acc", "0.5000", "0.4000", "0.800"]
    assert lines[3].split() == ["ppl", "bits_per_byte", "1.2000", "1.5000", "1.250"]
