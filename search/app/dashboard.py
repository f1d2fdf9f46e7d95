"""``strata-dashboard RUN_DIR [--port N]``: optuna-dashboard on a run's study, with its trial artifacts.

Serves the run's storage (``study.journal`` in the run directory, or the ``search.storage`` URL the run
used) and its artifact store (``<run_dir>/artifacts``, filled by ``search.app.artifacts.TrialArtifacts``)
through ``optuna_dashboard.run_server``, bound to 127.0.0.1 only: reach it from another machine with
an SSH tunnel (``ssh -L 8080:127.0.0.1:8080 host``). Every study of the storage is listed, so the
coarse-to-fine iterations (``strata``, ``strata-it1``, ...) appear side by side. optuna-dashboard 0.21
does not show Optuna's constraints: feasibility is each trial's ``feasible`` user attribute.
"""

from __future__ import annotations

import logging
from argparse import Namespace
from pathlib import Path
from typing import TYPE_CHECKING

from search.app.args import ArgumentParser
from search.app.rundir import open_storage, storage_url
from search.study import JOURNAL

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

HOST = "127.0.0.1"  # never another interface: the dashboard can edit studies and has no authentication
DEFAULT_PORT = 8080


def parse_args(argv: list[str] | None) -> Namespace:
    parser = ArgumentParser(prog="strata-dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a strata run directory (the one `strata` printed)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port on {HOST} (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    if not 0 < args.port < 65536:
        parser.error(f"--port {args.port} is not a TCP port (1-65535)")
    return args


def readable_storage(run_dir: Path) -> optuna.storages.BaseStorage | None:
    """The run's storage (None when it has none), read once through: one that cannot be read ends the command.

    A journal Optuna cannot parse either raises (bad bytes, bad JSON, unknown operations, no permission) or,
    when its only line is bad, reads as no study at all; both end with ``error: ...`` naming the file and
    exit 2, before anything (``artifacts/``) is created."""
    from search.app.args import fail

    journal = run_dir / JOURNAL
    source = journal if journal.is_file() else storage_url(run_dir)
    try:
        storage = open_storage(run_dir)
        studies = None if storage is None else storage.get_all_studies()
    except Exception as exc:  # whatever the storage raises, the study is unreadable
        reason = " ".join(str(exc).split())[:200] or "no detail"
        fail(f"cannot read the study in {source} ({type(exc).__name__}: {reason}): is it a strata run's study storage?")
    if studies == [] and journal.is_file() and journal.stat().st_size > 0:
        fail(f"cannot read the study in {journal}: it holds no Optuna journal record (a corrupt or foreign file?)")
    return storage


def main(argv: list[str] | None = None) -> None:
    """Start the dashboard on the run's storage and artifacts; blocks until interrupted."""
    from optuna_dashboard import run_server

    from search.app.args import fail
    from search.app.artifacts import artifact_store

    args = parse_args(argv)
    run_dir = args.run_dir.expanduser()
    if not run_dir.is_dir():
        fail(f"{run_dir} is not a directory: give the run directory that `strata` printed")
    storage = readable_storage(run_dir)
    if storage is None:
        fail(f"{run_dir} holds no study (no study.journal, no search.storage): give a run made with search=evo|tpe|...")
    store = artifact_store(run_dir)  # <run_dir>/artifacts, created when the search has not uploaded yet
    print(f"strata-dashboard: http://{HOST}:{args.port}/dashboard/ (study storage of {run_dir}; Ctrl-C stops)")
    try:
        run_server(storage, host=HOST, port=args.port, artifact_store=store)
    except OSError as exc:  # the port is taken or not ours to bind
        fail(f"cannot listen on {HOST}:{args.port} ({exc.strerror or exc}): pass another --port")
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
