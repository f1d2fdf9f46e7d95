"""The one exception type for mistakes a user can fix (bad path, bad config, impossible budget).

The command-line apps catch it, print ``error: <message>`` and exit with status 2; everything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable


class UsageError(ValueError):
    """A user error: the message names the bad value and how to fix it, on one line."""


def check_choice(key: str, value: object, choices: Iterable[str]) -> None:
    """Refuse ``key=value`` unless ``value`` is one of ``choices``: ``key='x' is not one of a, b, c``.

    Every choice field of the configs is checked here, against the registry that implements the choices
    (``supernet.variants.criteria.CRITERIA``, ``search.driver.SAMPLERS``, ...), so the names exist once."""
    choices = tuple(choices)
    if value not in choices:
        raise UsageError(f"{key}={value!r} is not one of {', '.join(choices)}")
