"""Files the user names (configs, dataset_info.json, data files): whether they are there,
and their text as UTF-8, or where it is not.

A file saved in another encoding would otherwise surface as a UnicodeDecodeError far from
the file, or (through `datasets`, which stores undecodable JSON-lines strings unchecked)
as a crash when a row is first looked at. The message names the line and column instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from tuneforge.errors import UserError


def kind_of(path: Path) -> Literal["file", "folder"] | None:
    """What `path` names; None for nothing, including a name too long for the file system
    (for which `Path.is_file` raises instead of answering)."""
    try:
        if path.is_file():
            return "file"
        return "folder" if path.is_dir() else None
    except OSError:
        return None


def utf8_lines(path: Path, error: type[UserError]) -> Iterator[tuple[int, str]]:
    """(1-based number, text) of each line; `error` names the first line and column that is
    not UTF-8, or says why the file cannot be read.

    Lines are decoded one at a time (a newline byte never occurs inside a UTF-8 character),
    so a large data file is checked without holding it in memory."""
    try:
        with path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                try:
                    yield number, line.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise error(
                        f"{path}:{number}: not UTF-8 text (byte 0x{line[err.start]:02x} "
                        f"at column {err.start + 1}); save the file as UTF-8"
                    ) from None
    except OSError as err:
        raise error(f"{path}: cannot read ({err.strerror or err})") from None


def check_utf8(path: Path, error: type[UserError]) -> None:
    """Raise `error` at the first line that is not UTF-8 (see `utf8_lines`)."""
    for _ in utf8_lines(path, error):
        pass


def read_utf8(path: Path, error: type[UserError]) -> str:
    """The text of `path` without a leading byte-order mark, or `error` saying why not."""
    check_utf8(path, error)
    return path.read_text(encoding="utf-8-sig")
