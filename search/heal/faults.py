"""Fault injection for the resume tests: ``kill -9`` of the healing process at a named point.

``$STRATA_HEAL_FAULT`` holds one point name (``step:K`` after optimizer step K; ``checkpoint:model:K`` between
the files of checkpoint K; ``checkpoint:pointer:K`` after checkpoint K's folder is in place, before the pointer
to it); a process reaching that point sends itself SIGKILL, which no handler sees, as a crash or an OOM kill
would. Unset (always, outside the tests), every point is a no-op.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "STRATA_HEAL_FAULT"


def fault_point(name: str) -> None:
    """SIGKILL this process when ``$STRATA_HEAL_FAULT`` names ``name``."""
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
