"""strata-export: write a finished run's pruned model as a GGUF file that stock llama.cpp (and so Ollama,
LM Studio, llama-cpp-python) runs, every layer at its own width.

    strata-export RUN_DIR --format gguf [--dtype f32|f16|q8_0] [--out PATH]

reads ``RUN_DIR/model/`` and writes ``RUN_DIR/model.gguf`` (``--out`` elsewhere). ``RUN_DIR`` may also be
a model directory itself (a dense checkpoint, to serve the baseline the same way). A family without an
exact llama.cpp route (Qwen3, Gemma 2/3, OLMo 2, Granite), or a tokenizer llama.cpp would split
differently, ends with ``error: ...`` naming why, and exit status 2.
"""

from __future__ import annotations

import logging
from pathlib import Path

from search.app.args import ArgumentParser, fail
from supernet.errors import UsageError
from supernet.io.export.gguf import GGUF_DTYPES, GGUF_FILE, export_gguf

FORMATS = ("gguf",)


def model_dir_of(path: Path) -> Path:
    """The saved model of a run directory (``RUN_DIR/model``), or ``path`` itself when it is one."""
    for candidate in (path / "model", path):
        if (candidate / "config.json").is_file():
            return candidate
    raise UsageError(f"{path} holds neither model/config.json nor config.json: give a finished run's directory")


def export_run(run_dir: Path, *, fmt: str = "gguf", dtype: str = "f32", out: Path | None = None,
               progress: bool = True) -> Path:  # fmt: skip
    """Write ``run_dir``'s model in ``fmt``; returns the file written (default ``RUN_DIR/model.gguf``)."""
    from supernet.errors import check_choice

    check_choice("--format", fmt, FORMATS)
    run_dir = Path(run_dir).expanduser()
    return export_gguf(model_dir_of(run_dir), out or run_dir / GGUF_FILE, dtype=dtype, progress=progress)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="strata-export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run directory (or a model directory)")
    parser.add_argument("--format", default="gguf", choices=FORMATS, help="output format (default gguf)")
    parser.add_argument(
        "--dtype",
        default="f32",
        choices=GGUF_DTYPES,
        help="tensor type: f32 (exact, default), f16, q8_0 (rows not a multiple of 32 stay f16)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output file (default RUN_DIR/model.gguf)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        path = export_run(args.run_dir, fmt=args.format, dtype=args.dtype, out=args.out, progress=not args.quiet)
    except UsageError as error:
        fail(str(error))
    print(f"strata-export: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {args.dtype})")


if __name__ == "__main__":
    main()
