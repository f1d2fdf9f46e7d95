"""The one exception type for mistakes a user can fix (bad path, bad config, impossible budget).

The command-line apps catch it, print ``error: <message>`` and exit with status 2; everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UsageError(ValueError):
    """A user error: the message names the bad value and how to fix it, on one line."""
