"""argparse for strata's small tools (``strata-summary``, ``strata-dashboard``), with the project's errors.

A bad argument ends like every user error of the apps (``search.cli.fail``): one line ``error: ...``
naming the fix, and exit status 2.
"""

from __future__ import annotations

import argparse


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one ``error: ...`` line (with the usage) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        from search.cli import fail

        fail(f"{message} (usage: {self.format_usage().strip().removeprefix('usage: ')})")
