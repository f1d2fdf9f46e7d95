"""How every strata command ends on a user error: one line ``error: ...`` naming the fix, exit status 2.

``fail`` is that exit; ``ArgumentParser`` is argparse for the small tools (``strata-summary``,
``strata-dashboard``) with its errors ending the same way.
"""

from __future__ import annotations

import argparse
import sys


def fail(message: str) -> None:
    """Print the one-line user error and exit with status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one ``error: ...`` line (with the usage) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (usage: {self.format_usage().strip().removeprefix('usage: ')})")
