"""``strata-export --out``: an existing file is replaced only with ``--force``, nothing inside a model directory
ever is, ``--out DIR`` writes ``DIR/model.gguf``; and ``--help`` describes the command in whole sentences."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from gguf_models import export_cli

from search.app.export import main


@pytest.fixture(scope="module")
def run_dir(tiny_reference_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished-run layout: ``RUN/model/`` (the tiny reference model, copied so tests can look at its files)."""
    run = tmp_path_factory.mktemp("run")
    shutil.copytree(tiny_reference_dir, run / "model")
    return run


def one_error(status: int, err: str, expected: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert status == 2 and len(errors) == 1 and expected in errors[0] and "Traceback" not in err, err


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_an_existing_file_is_refused_without_force(run_dir: Path, tmp_path: Path, capsys) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("the user's own text\n" * 1000)
    status, err = export_cli(capsys, str(run_dir), "--out", str(notes))
    one_error(status, err, "already exists: pass --force")
    assert notes.read_text() == "the user's own text\n" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]  # no temporary file left either

    status, err = export_cli(capsys, str(run_dir), "--out", str(notes), "--force")
    assert status == 0, err
    assert notes.read_bytes()[:4] == b"GGUF"


@pytest.mark.parametrize("target", ["model/model.safetensors", "model/config.json", "model/new.gguf", "model"])
def test_a_path_inside_the_model_directory_is_refused_even_with_force(
    run_dir: Path, target: str, capsys: pytest.CaptureFixture
) -> None:
    before = snapshot(run_dir)
    for force in ([], ["--force"]):
        status, err = export_cli(capsys, str(run_dir), "--out", str(run_dir / target), *force)
        one_error(status, err, "inside the model directory")
    assert snapshot(run_dir) == before


def test_a_path_inside_another_model_directory_is_refused(
    run_dir: Path, tiny_reference_dir: Path, tmp_path: Path, capsys
) -> None:
    source = tmp_path / "source"
    shutil.copytree(tiny_reference_dir, source)
    before = snapshot(source)
    for target in (source / "model.safetensors", source / "x.gguf"):
        status, err = export_cli(capsys, str(run_dir), "--out", str(target), "--force")
        one_error(status, err, f"inside the model directory {source}")
    # exporting the model directory itself: its weights are not an output either
    status, err = export_cli(capsys, str(source), "--out", str(source / "model.safetensors"), "--force")
    one_error(status, err, "inside the model directory")
    assert snapshot(source) == before


def test_out_onto_a_directory_writes_model_gguf_into_it(run_dir: Path, tmp_path: Path, capsys) -> None:
    status, err = export_cli(capsys, str(run_dir), "--out", str(tmp_path))
    assert status == 0, err
    written = tmp_path / "model.gguf"
    assert written.read_bytes()[:4] == b"GGUF"
    first = written.read_bytes()

    status, err = export_cli(capsys, str(run_dir), "--out", str(tmp_path), "--dtype", "f16")  # exists now
    one_error(status, err, f"{written} already exists")
    assert written.read_bytes() == first


def test_help_describes_the_command_in_a_whole_sentence(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    sentence = "GGUF file that stock llama.cpp (and so Ollama, LM Studio, llama-cpp-python) runs, every layer at its"
    assert f"{sentence} own width." in text
    assert "--force" in text
