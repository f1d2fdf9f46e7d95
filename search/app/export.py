"""strata-export: write a finished run's pruned model as a GGUF file that stock llama.cpp (and so Ollama,
LM Studio, llama-cpp-python) runs, every layer at its own width.

    strata-export RUN_DIR --format gguf [--dtype f32|f16|q8_0] [--out PATH] [--force]

reads ``RUN_DIR/model/`` and writes ``RUN_DIR/model.gguf`` (``--out`` elsewhere; ``--out DIR`` writes
``DIR/model.gguf``). ``RUN_DIR`` may also be a model directory itself (a dense checkpoint, to serve the
baseline the same way). An existing file is replaced only with ``--force``; an ``--out`` inside a model
directory (one holding ``config.json`` or ``*.safetensors``, such as the run's ``model/``) never is. A
family without an exact llama.cpp route (Qwen3, Gemma 2/3, OLMo 2, Granite), or a tokenizer llama.cpp
would split differently, ends with ``error: ...`` naming why, and exit status 2, before anything is written.
"""

from __future__ import annotations

import logging
from pathlib import Path

from search.app.args import ArgumentParser, fail
from supernet.errors import UsageError
from supernet.io.export.gguf import GGUF_DTYPES, GGUF_FILE, export_gguf

FORMATS = ("gguf",)
DESCRIPTION = " ".join(__doc__.split("\n\n")[0].split())  # the first paragraph, whole (``--help``)


def model_dir_of(path: Path) -> Path:
    """The saved model of a run directory (``RUN_DIR/model``), or ``path`` itself when it is one."""
    for candidate in (path / "model", path):
        if (candidate / "config.json").is_file():
            return candidate
    raise UsageError(f"{path} holds neither model/config.json nor config.json: give a finished run's directory")


def is_model_dir(path: Path) -> bool:
    """Whether ``path`` is a saved model's directory: it holds ``config.json`` or ``*.safetensors`` weights."""
    return path.is_dir() and ((path / "config.json").is_file() or any(path.glob("*.safetensors")))


def output_path(run_dir: Path, model_dir: Path, out: Path | None, *, force: bool = False) -> Path:
    """The file to write: ``RUN_DIR/model.gguf``, ``out``, or ``out/model.gguf`` when ``out`` is a directory.

    Raises UsageError, before anything is written, for an ``out`` inside a model directory (the exported
    ``model_dir`` at any depth, any other one directly: its weights are never replaced, not even with
    ``force``) and for an existing file without ``force``.
    """
    if out is None:
        path = run_dir / GGUF_FILE  # inside model_dir when RUN_DIR is a model directory: the documented default
    else:
        path = Path(out).expanduser()
        if path.is_dir():
            path = path / GGUF_FILE
        source = model_dir.resolve()
        for candidate in (path.absolute(), path.resolve()):
            inside = next((d for d in candidate.parents if d == source), None)
            if inside is None and is_model_dir(candidate.parent):
                inside = candidate.parent
            if inside is not None:
                raise UsageError(
                    f"{path} is inside the model directory {inside}: writing there would corrupt the model; "
                    "give --out a path outside it (--force does not apply)"
                )
    if path.is_dir():
        raise UsageError(f"{path} is a directory: give --out a file path")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists: pass --force to replace it, or --out another path")
    return path


def export_run(run_dir: Path, *, fmt: str = "gguf", dtype: str = "f32", out: Path | None = None,
               progress: bool = True, force: bool = False) -> Path:  # fmt: skip
    """Write ``run_dir``'s model in ``fmt``; returns the file written (default ``RUN_DIR/model.gguf``).

    ``out``: a file, or a directory to write ``model.gguf`` into; an existing file is replaced only with
    ``force``, and nothing inside a model directory ever is (see :func:`output_path`)."""
    from supernet.errors import check_choice

    check_choice("--format", fmt, FORMATS)
    run_dir = Path(run_dir).expanduser()
    model_dir = model_dir_of(run_dir)
    path = output_path(run_dir, model_dir, out, force=force)
    if model_dir == run_dir / "model" and path == run_dir / GGUF_FILE:
        from search.app.outputs import claim_output, read_record

        if read_record(run_dir):  # a run's own output, recorded as strata's: overwrite=true may replace it
            claim_output(run_dir, GGUF_FILE)
    return export_gguf(model_dir, path, dtype=dtype, progress=progress)


def main(argv: list[str] | None = None) -> None:
    """Export the run (see the module docstring); user errors end with ``error: ...`` and exit 2."""
    parser = ArgumentParser(prog="strata-export", description=DESCRIPTION)
    parser.add_argument("run_dir", type=Path, help="a finished run directory (or a model directory)")
    parser.add_argument("--format", default="gguf", choices=FORMATS, help="output format (default gguf)")
    parser.add_argument(
        "--dtype",
        default="f32",
        choices=GGUF_DTYPES,
        help="tensor type: f32 (exact, default), f16, q8_0 (rows not a multiple of 32 stay f16)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output file, or a directory to write model.gguf into (default RUN_DIR/model.gguf); "
        "never inside a model directory",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing output file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        path = export_run(args.run_dir, fmt=args.format, dtype=args.dtype, out=args.out, progress=not args.quiet,
                          force=args.force)  # fmt: skip
    except UsageError as error:
        fail(str(error))
    except OSError as error:  # e.g. the output's folder cannot be made or written (read-only, a file in the way)
        fail(f"{error.filename or args.run_dir}: {error.strerror or error}")
    print(f"strata-export: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {args.dtype})")


if __name__ == "__main__":
    main()
