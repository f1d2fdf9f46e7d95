"""``strata-dashboard`` on a study journal it cannot read: one ``error:`` line naming the file, exit 2, and
nothing created (no ``artifacts/``, no server started)."""

from __future__ import annotations

from pathlib import Path

import optuna
import optuna_dashboard
import pytest
from optuna.storages.journal import JournalFileBackend

from search.app.dashboard import main

GARBAGE = {
    "one_line": b"this is not a journal",  # Optuna reads it as an empty storage, no error
    "text_lines": b"hello world\nnot json either\n",
    "binary": bytes(range(256)) * 8,
    "unknown_operation": b'{"op_code": 0, "worker_id": "w", "study_name": "s", "directions": [1]}\n{"op_code": 99}\n',
}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple]:
    """``optuna_dashboard.run_server`` replaced by a recorder (a real one would block the test)."""
    calls: list[tuple] = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


@pytest.mark.parametrize("content", sorted(GARBAGE))
def test_a_corrupt_journal_is_one_error_naming_it(content: str, tmp_path: Path, served: list, capsys) -> None:
    journal = tmp_path / "study.journal"
    journal.write_bytes(GARBAGE[content])
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path)])
    captured = capsys.readouterr()
    assert exit_.value.code == 2
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in captured.err, captured.err
    assert f"cannot read the study in {journal}" in errors[0]
    assert not served and "http://" not in captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.journal"]  # no artifacts/ created
    assert journal.read_bytes() == GARBAGE[content]


def test_a_readable_journal_is_served(tmp_path: Path, served: list, capsys: pytest.CaptureFixture) -> None:
    from search.app.dashboard import readable_storage

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.create_study(study_name="strata", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    with (tmp_path / "study.journal").open("ab") as handle:  # a killed write's partial last line is tolerated
        handle.write(b'{"op_code": 4, "worker')
    assert [s.study_name for s in readable_storage(tmp_path).get_all_studies()] == ["strata"]
    main([str(tmp_path), "--port", "8123"])
    assert len(served) == 1 and served[0][1]["port"] == 8123
    assert (tmp_path / "artifacts").is_dir()
    assert "http://127.0.0.1:8123/dashboard/" in capsys.readouterr().out
