"""``strata-dashboard``: optuna-dashboard on a finished run's study and artifacts, on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import psutil
import pytest
from optuna.storages.journal import JournalFileBackend

from search.app.artifacts import TrialArtifacts

if TYPE_CHECKING:
    from collections.abc import Iterator

SEARCH = ["model.reference=tiny", "data.seq_len=64", "data.calib_sequences=8", "data.eval_seq_len=64",
          "data.eval_sequences=4", "progress=false", "search=evo", "search.trials=8", "search.offspring=4",
          "search.stage_tokens=[128,256,512]", "search.survivors=[2,1,1]"]  # fmt: skip


@pytest.fixture(scope="module")
def finished_run(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("searched")
    proc = subprocess.run([sys.executable, "-m", "search.app.cli", *SEARCH, f"hydra.run.dir={run_dir}"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def dashboard(run_dir: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """A running ``strata-dashboard`` on a free port; stopped (this process only) on exit."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "search.app.dashboard", str(run_dir), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, proc.stdout.read()[-2000:]
            with contextlib.suppress(OSError):
                if get(f"{base}/api/meta")[0] == 200:
                    break
            assert time.time() < deadline, "the dashboard did not answer within 60 s"
            time.sleep(0.3)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def study_detail(base: str, name: str) -> dict:
    status, body = get(f"{base}/api/studies")
    assert status == 200
    study_id = next(s["study_id"] for s in json.loads(body)["study_summaries"] if s["study_name"] == name)
    status, body = get(f"{base}/api/studies/{study_id}")
    assert status == 200
    return {"study_id": study_id, **json.loads(body)}


def test_dashboard_serves_a_finished_run_on_localhost_only(finished_run: Path) -> None:
    with dashboard(finished_run) as (base, proc):
        detail = study_detail(base, "strata")
        trials = detail["trials"]
        assert len(trials) >= 8
        complete = [t for t in trials if t["state"] == "Complete"]
        assert complete and all(any(a["key"] == "feasible" for a in t["user_attrs"]) for t in complete), (
            "feasibility is a user attribute (optuna-dashboard 0.21 ignores constraints)"
        )
        for trial in complete:  # search.app.artifacts.TrialArtifacts, wired into the pipeline
            assert f"allocation-{trial['number']}.json" in {a["filename"] for a in trial["artifacts"]}
        listening = [c for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == "LISTEN"]
        assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}
        assert get(f"{base}/dashboard/")[0] == 200


def test_dashboard_serves_trial_artifacts(grid, tmp_path: Path) -> None:
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(tmp_path / "study.journal")))
    study = optuna.create_study(study_name="strata", storage=storage)
    hook = TrialArtifacts(tmp_path, grid)
    trial = study.ask()
    hook(study, trial, list(grid.target), 0.5)
    study.tell(trial, 0.5)
    with dashboard(tmp_path) as (base, _):
        detail = study_detail(base, "strata")
        artifacts = {a["filename"]: a for a in detail["trials"][0]["artifacts"]}
        assert set(artifacts) == {"allocation-0.json", "best-0.svg"}
        trial_id = detail["trials"][0]["trial_id"]
        artifact_id = artifacts["allocation-0.json"]["artifact_id"]
        status, body = get(f"{base}/artifacts/{detail['study_id']}/{trial_id}/{artifact_id}")
        assert status == 200 and json.loads(body)["levels"] == list(grid.target)


@pytest.mark.parametrize("case", ["missing", "no_study", "bad_port"])
def test_bad_arguments_are_one_line_errors(case: str, tmp_path: Path) -> None:
    args = {
        "missing": [str(tmp_path / "nope")],
        "no_study": [str(tmp_path)],
        "bad_port": [str(tmp_path), "--port", "0"],
    }
    proc = subprocess.run([sys.executable, "-m", "search.app.dashboard", *args[case]], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
