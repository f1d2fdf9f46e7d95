"""The lm-eval wrapper: a missing install and a task without local data are user errors naming the fix, and
offline() switches downloads off and back."""

from __future__ import annotations

import os
import sys

import pytest

from search.evaluate.harness import load_tasks, offline, require_lm_eval, task_manager
from supernet.errors import UsageError


def test_without_lm_eval_the_error_gives_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval raises ImportError
    with pytest.raises(UsageError, match=r'lm_eval is missing\): pip install -e "\.\[eval\]"'):
        require_lm_eval()


def test_offline_sets_the_flags_and_restores_them(monkeypatch) -> None:
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    before = (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE)
    with offline():
        assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"
        assert huggingface_hub.constants.HF_HUB_OFFLINE is True and datasets.config.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and os.environ["HF_DATASETS_OFFLINE"] == "0"
    assert (huggingface_hub.constants.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE) == before


def test_a_task_whose_data_is_absent_is_named_in_the_error(tmp_path) -> None:
    (tmp_path / "gone.yaml").write_text(
        "task: local_gone\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {tmp_path / 'missing.jsonl'}\ntest_split: test\noutput_type: loglikelihood_rolling\n"
        "doc_to_text: ''\ndoc_to_target: text\n"
    )
    (tmp_path / "hub.yaml").write_text(  # a hub dataset that is not in the local cache: never downloaded
        "task: local_hub\ndataset_path: strata-tests/no-such-dataset\ntest_split: test\n"
        "output_type: loglikelihood_rolling\ndoc_to_text: ''\ndoc_to_target: text\n"
    )
    with offline():
        manager = task_manager(["local_gone", "local_hub"], [tmp_path])
        for name in ("local_gone", "local_hub"):
            with pytest.raises(UsageError, match=rf"^task {name}: its data is not present locally .*--include-path"):
                load_tasks(manager, [name])
