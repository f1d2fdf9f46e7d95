"""How every strata command ends on a user error: one line ``error: ...`` naming the fix, exit status 2.

``fail`` is that exit, ``interrupted`` the one of a Ctrl-C (one line, status 130); ``ArgumentParser`` is argparse
for the small tools (``strata-summary``, ``strata-dashboard``) with its errors ending the same way.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

INTERRUPTED = 130  # the shell's status for a command ended by SIGINT (128 + 2)


def fail(message: str) -> NoReturn:
    """Print the one-line user error and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def interrupted(prog: str, message: str) -> NoReturn:
    """Print the one line a Ctrl-C ends with (``PROG: interrupted ...``) and exit with status 130."""
    start = "\n" if sys.stderr.isatty() else ""  # a progress bar may hold the terminal's line
    print(f"{start}{prog}: interrupted {message}", file=sys.stderr, flush=True)
    sys.exit(INTERRUPTED)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one ``error: ...`` line (with the usage) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (usage: {self.format_usage().strip().removeprefix('usage: ')})")
