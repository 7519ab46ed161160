"""One line for a YAML error, for every YAML the user writes (configs, overrides, FSDP files)."""

from __future__ import annotations

import yaml


def yaml_error(exc: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    """The 1-based line (when known) and what is wrong; `str(exc)` spans several lines.

    Reader errors (control characters) carry a character position instead of a line."""
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return line, f"character U+{exc.character:04X} is not allowed in YAML"
    mark = getattr(exc, "problem_mark", None)
    return (
        mark.line + 1 if mark is not None else None,
        getattr(exc, "problem", None) or "not valid YAML",
    )
