"""Pieces of the one-line messages a `UserError` carries, written the same way everywhere.

A misspelt name gets a did-you-mean hint, and a library's exception is quoted by its first
line only, so every message stays on one line whatever the library raised.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

# How alike a choice must be to the misspelt word to be suggested (difflib's ratio).
SIMILARITY = 0.6


def did_you_mean(
    word: str, choices: Iterable[str], *, n: int = 1, renamed: Mapping[str, str] | None = None
) -> str:
    """``; did you mean 'x'?`` (or ``'x' or 'y'`` for `n` > 1) for the closest choices, or ''.

    `renamed` maps old names to new ones: an old name is matched too, and its new name is
    suggested."""
    renamed = renamed or {}
    close = difflib.get_close_matches(word, [*choices, *renamed], n=n, cutoff=SIMILARITY)
    names = dict.fromkeys(renamed.get(name, name) for name in close)
    return "; did you mean " + " or ".join(f"'{name}'" for name in names) + "?" if names else ""


def first_line(exc: BaseException) -> str:
    """The first line of the exception's message, or its type's name when it has none."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
