"""Keeping a run directory: the lock of the strata process running in it, the record of what strata wrote
there, and the clearing of a rerun.

``metrics.json`` is written last: a directory holding it is a finished run, one without it an unfinished one
(killed, or failed) whose rerun resumes the study and writes the rest again. ``.strata-outputs.json`` records
what strata wrote under the output names (:data:`OUTPUTS`): a name is claimed (``"whole"``) before strata
writes it, and a folder's files are listed once it is complete. A rerun deletes only what the record names,
and refuses, before any work and deleting nothing, a directory whose output names hold anything else (a
``model/`` of the user's own, a file added to strata's ``model/``): by record and not by content, because
content cannot tell a user's Hugging Face ``model/`` from strata's, nor a user's file inside strata's folder.
``.strata.lock`` holds the PID of the strata process running in the directory (:func:`run_lock`)."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from search.app.rundir import ARTIFACTS, EVAL, FINISHED, read_json
from search.study import JOURNAL
from supernet.errors import UsageError

RECORD = ".strata-outputs.json"  # what strata wrote under the output names
LOCK = ".strata.lock"  # flock'ed by the running strata process, holding its PID
WHOLE = "whole"  # a record entry: everything under the name is strata's (a file, or a folder being written)


HEAL_STATE = "heal-state"  # a heal's checkpoints and teacher cache (search/app/heal.py), deleted when it is done
OUTPUTS = ("metrics.json", "allocation.json", "model", "model.gguf", JOURNAL, ARTIFACTS, "report.html", "manifest.json",
           "pareto.json", EVAL, "healed", HEAL_STATE)  # fmt: skip
RESUMED = (JOURNAL, ARTIFACTS)  # kept by the rerun of an unfinished run, whose search resumes from them
KEPT_ON_RERUN = (*RESUMED, HEAL_STATE)  # and its in-run heal (heal.tokens), which resumes from its last checkpoint


# atomic_path's temporary siblings (supernet/io/files.py: ``.<name>.`` and mkstemp/mkdtemp's 8 characters)
_NAMES = "|".join(re.escape(name) for name in (*OUTPUTS, RECORD))
TEMPORARY = re.compile(rf"\.(?:{_NAMES})\.[a-z0-9_]{{8}}")


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir`` (``fcntl.flock`` on ``.strata.lock``, which then holds this PID).

    A second strata process in the directory is refused (:class:`UsageError` naming the holder's PID). The
    kernel releases the lock when the holder exits, however it ends (``kill -9`` too), so a killed run never
    blocks the next; the file stays (removing it would let two processes lock two different files)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise UsageError(
                f"run directory {run_dir} is in use by process {holder}: wait for that run to end (or stop it), or "
                "give another hydra.run.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def read_record(run_dir: Path) -> dict[str, Any]:
    """The record of what strata wrote: output name -> ``"whole"`` or the list of the folder's files."""
    data = read_json(Path(run_dir) / RECORD) or {}
    return dict(data.get("outputs") or {})


def _write_record(run_dir: Path, outputs: dict[str, Any]) -> None:
    from supernet.io.files import write_json

    write_json(Path(run_dir) / RECORD, {"written_by": "strata", "outputs": outputs})


def _files(path: Path) -> list[str]:
    """Every file (and link) under the folder ``path``, as sorted relative POSIX paths; symlinks not followed."""
    out = []
    for root, dirs, files in os.walk(path):
        rel = Path(root).relative_to(path)
        out.extend((rel / name).as_posix() for name in files)
        out.extend((rel / name).as_posix() for name in dirs if os.path.islink(os.path.join(root, name)))
    return sorted(out)


def claim_output(run_dir: Path, name: str) -> None:
    """Record that strata is about to write the output ``name`` (everything under it is strata's until
    :func:`record_output` lists it): a kill while it is written leaves nothing a rerun would take for the user's."""
    outputs = read_record(run_dir)
    outputs[name] = WHOLE
    _write_record(run_dir, outputs)


def record_output(run_dir: Path, name: str) -> None:
    """Record the output ``name`` as written: a folder by its files, a file whole; dropped when it is absent."""
    path = Path(run_dir) / name
    outputs = read_record(run_dir)
    if path.is_dir() and not path.is_symlink():
        outputs[name] = _files(path)
    elif path.exists() or path.is_symlink():
        outputs[name] = WHOLE
    else:
        outputs.pop(name, None)
    _write_record(run_dir, outputs)


@contextmanager
def writing_output(run_dir: Path, name: str) -> Iterator[Path]:
    """Claim the output ``name``, yield its path to write, then record what was written."""
    claim_output(run_dir, name)
    yield Path(run_dir) / name
    record_output(run_dir, name)


def foreign_files(run_dir: Path) -> list[str]:
    """What the output names of ``run_dir`` hold that strata did not write (not in the record), run-relative;
    empty folders hold nothing."""
    run_dir = Path(run_dir)
    outputs = read_record(run_dir)
    foreign = []
    for name in OUTPUTS:
        path, entry = run_dir / name, outputs.get(name)
        if entry == WHOLE or not (path.exists() or path.is_symlink()):
            continue
        if path.is_symlink() or not path.is_dir():
            foreign.append(name)
            continue
        written = set(entry) if isinstance(entry, list) else set()
        foreign.extend(f"{name}/{rel}" for rel in _files(path) if rel not in written)
    return foreign


def temporaries(run_dir: Path) -> list[Path]:
    """The temporary siblings strata's atomic writes left in ``run_dir`` (a killed write of an output)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    return sorted(p for p in run_dir.iterdir() if TEMPORARY.fullmatch(p.name))


def _remove(path: Path, entry: Any) -> None:
    """Delete what the record ``entry`` names at ``path``: all of it, or the listed files; then empty folders."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    if not path.is_dir():
        return
    if entry == WHOLE:
        shutil.rmtree(path)
        return
    for rel in entry or []:
        target = path / rel
        if target.is_symlink() or target.is_file():
            target.unlink()
    for root, _, _ in os.walk(path, topdown=False):
        if not os.listdir(root):
            os.rmdir(root)


def refuse_foreign(run_dir: Path) -> None:
    """Refuse a run directory whose output names hold files strata did not write (:func:`foreign_files`)."""
    foreign = foreign_files(run_dir)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise UsageError(
            f"hydra.run.dir={run_dir} holds {shown}, which strata did not write (they are named like its outputs): "
            "move them away or give another directory; nothing was deleted"
        )


def prepare_run_dir(run_dir: Path, *, overwrite: bool) -> None:
    """Make ``run_dir`` ready for a run (its lock held): refuse what strata did not write and, without
    ``overwrite``, a finished run; delete strata's temporaries and the outputs it will write again; with
    ``overwrite`` every output strata wrote, the study too, else (an unfinished run) all but the study
    (``study.journal``, ``artifacts/``), which the search resumes, and ``heal-state/``, which its heal resumes."""
    run_dir = Path(run_dir)
    refuse_foreign(run_dir)
    if (run_dir / FINISHED).is_file() and not overwrite:
        raise UsageError(
            f"hydra.run.dir={run_dir} holds a finished run ({FINISHED}): give another directory, or "
            "overwrite=true to run again and replace its outputs"
        )
    for tmp in temporaries(run_dir):
        shutil.rmtree(tmp) if tmp.is_dir() and not tmp.is_symlink() else tmp.unlink()
    outputs = read_record(run_dir)
    for name in OUTPUTS:
        if name in KEPT_ON_RERUN and not overwrite:
            continue
        _remove(run_dir / name, outputs.get(name))
        outputs.pop(name, None)
    if (run_dir / RECORD).is_file():
        _write_record(run_dir, outputs)


def check_writable(key: str, directory: Path, fix: str = "give a writable directory", *, label: str = "") -> None:
    """Refuse an output directory that cannot be created or written (``key=directory``, or ``label``): a file is
    created in it, or in its nearest existing ancestor, and removed (root passes ``os.access`` on /proc and /sys)."""
    label = label or f"{key}={directory}"
    try:
        existing = directory.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise UsageError(f"{label} cannot be created: {existing} is a file; {fix}")
        handle, probe = tempfile.mkstemp(prefix=".strata-write-test-", dir=existing)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise UsageError(f"{label} cannot be written: {existing} takes no new file ({why}); {fix}") from None
    os.close(handle)
    os.unlink(probe)
