"""Read a registered dataset's rows through `datasets`, one file at a time.

Files are loaded one by one so that every later problem can name the file and the row it
comes from. When `datasets` cannot parse a JSON file, its message names an Arrow block, not a
line, so the file is re-read here with the `json` module to find the line at fault.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

import datasets

from tuneforge.data.registry import DatasetSpec
from tuneforge.errors import DataError
from tuneforge.messages import first_line
from tuneforge.userfiles import check_utf8, utf8_lines

BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".csv": "csv",
    ".parquet": "parquet",
    ".txt": "text",
    ".arrow": "arrow",
}


def data_files(path: Path) -> list[Path]:
    """The file itself, or every visible file of a folder (sorted), all of a known type."""
    files = (
        sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        if path.is_dir()
        else [path]
    )
    if not files:
        raise DataError(f"{path}: the folder holds no data files")
    for file in files:
        if file.suffix.lower() not in BUILDERS:
            raise DataError(
                f"{file}: unsupported file type '{file.suffix}' "
                f"(use {', '.join(sorted(set(BUILDERS)))})"
            )
    return files


def iter_files(spec: DatasetSpec, cache_dir: str | None) -> Iterator[tuple[str, datasets.Dataset]]:
    """Yield (where, rows) for each file of a local dataset, or once for a hub dataset."""
    if spec.hub_id is not None:
        rows = load_hub(spec, cache_dir)
        assert isinstance(rows, datasets.Dataset)  # one split, not streamed
        yield f"{spec.hub_id} (hub)", rows
        return
    assert spec.path is not None
    for file in data_files(spec.path):
        yield str(file), load_file(file, cache_dir)


def load_file(path: Path, cache_dir: str | None) -> datasets.Dataset:
    builder = BUILDERS[path.suffix.lower()]
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    if builder == "json":
        _check_json(path)
    elif builder in ("csv", "text"):
        check_utf8(path, DataError)
    try:
        with _parse_errors_unlogged():
            return datasets.load_dataset(
                builder, data_files=str(path), split="train", cache_dir=cache_dir
            )
    except Exception as err:  # datasets wraps parser errors in several exception types
        raise read_error(path, err) from None


def stream_file(path: Path, cache_dir: str | None) -> datasets.IterableDataset:
    """The file's rows as read, never all in memory. The whole-file checks of `load_file`
    are left out (they read it all); a parse error reaches `read_error` when the stream
    gets to it, and a null JSON line arrives as a row of nulls, which conversion refuses."""
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    try:
        with _parse_errors_unlogged():
            return datasets.load_dataset(
                BUILDERS[path.suffix.lower()],
                data_files=str(path),
                split="train",
                cache_dir=cache_dir,
                streaming=True,
            )
    except Exception as err:
        raise read_error(path, err) from None


def read_error(path: Path, err: Exception) -> DataError:
    """One line naming the file (and, for JSON, the line) that `datasets` could not parse."""
    if BUILDERS[path.suffix.lower()] == "json":
        return DataError(diagnose_json(path) or _reason(path, err))
    return DataError(_reason(path, err))


def load_hub(
    spec: DatasetSpec, cache_dir: str | None, *, streaming: bool = False
) -> datasets.Dataset | datasets.IterableDataset:
    """Load a hub dataset; fail in a second with advice when the hub cannot be reached."""
    offline = os.environ.get("HF_HUB_OFFLINE", "") in {"1", "true", "TRUE", "yes"}
    proxied = any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy"))
    if not (offline or proxied) and not _hub_reachable():
        raise DataError(
            f"dataset '{spec.name}': cannot reach the Hugging Face hub to load "
            f"'{spec.hub_id}'; download the data and register it with file_name "
            f"instead (or set HF_HUB_OFFLINE=1 to use a cached copy)"
        )
    try:
        return datasets.load_dataset(
            spec.hub_id,
            name=spec.subset,
            data_dir=spec.folder,
            split=spec.split,
            revision=spec.revision,
            cache_dir=cache_dir,
            streaming=streaming,
        )
    except Exception as err:  # network, missing split or subset, missing cache: all one line
        raise DataError(
            f"dataset '{spec.name}': cannot load '{spec.hub_id}' from the hub "
            f"({first_line(err)}); download the data and register it with "
            f"file_name instead"
        ) from None


def _hub_reachable() -> bool:
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((endpoint.hostname or "", port), timeout=3):
            return True
    except OSError:
        return False


def _check_json(path: Path) -> None:
    """What `datasets` cannot be trusted with: pyarrow (26) crashes the whole process on a
    JSON-lines row that is null, and `datasets` turns a list of rows into such lines, so a
    list is checked row by row here (`datasets` reads it whole anyway)."""
    first = ""
    for number, line in utf8_lines(path, DataError):
        first = first or line.strip().lstrip("\ufeff")
        if line.strip() == "null" and not first.startswith("["):
            raise DataError(f"{path}:{number}: the row is null; every row must be a JSON object")
    if not first:
        raise DataError(f"{path}: the file holds only blank lines")
    if not first.startswith("["):
        return
    try:
        rows = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, RecursionError):
        return  # `datasets` fails on it too, and `diagnose_json` says why
    if rows == []:
        raise DataError(f"{path}: the list of rows is empty")
    problem = _non_object_row(path, rows) if isinstance(rows, list) else None
    if problem:
        raise DataError(problem)


@contextmanager
def _parse_errors_unlogged() -> Iterator[None]:
    """`datasets` logs a file it cannot parse and then raises; the DataError says it once."""
    library = logging.getLogger("datasets")
    level = library.level
    library.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        library.setLevel(level)


def diagnose_json(path: Path) -> str | None:
    """Name the line or row that makes a JSON / JSON-lines file unreadable, if one does."""
    try:
        return _diagnose_json(path)
    except RecursionError:
        return f"{path}: values nested too deeply (hundreds of levels) to be rows"


def _diagnose_json(path: Path) -> str | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        whole = json.loads(text)
    except json.JSONDecodeError as err:
        first = next((line for line in text.splitlines() if line.strip()), "")
        if path.suffix.lower() == ".json" and not _is_json_object(first):
            return f"{path}:{err.lineno}: invalid JSON ({err.msg})"
        return _diagnose_lines(path, text)
    if isinstance(whole, dict):
        return f"{path}: the top level is one object; expected a list of rows or JSON lines"
    if not isinstance(whole, list):
        return f"{path}: the top level is {type(whole).__name__}; expected a list of rows"
    return _diagnose_rows(path, whole)


def _diagnose_lines(path: Path, text: str) -> str | None:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            return f"{path}:{number}: invalid JSON ({err.msg})"
    return _diagnose_rows(path, rows)


def _diagnose_rows(path: Path, rows: list[object]) -> str | None:
    return _non_object_row(path, rows) or _mixed_kinds(path, rows)


def _non_object_row(path: Path, rows: list[object]) -> str | None:
    for number, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            return f"{path}: row {number}: is {_kind(row)}; every row must be an object"
    return None


def _mixed_kinds(path: Path, rows: list[object]) -> str | None:
    """The first field whose kind (text, number, list, ...) differs from an earlier row's."""
    first_kind: dict[str, tuple[str, int]] = {}
    for number, row in enumerate(rows, start=1):
        for key, kind in _leaf_kinds(row, ""):
            seen = first_kind.setdefault(key, (kind, number))
            if seen[0] != kind:
                return f"{path}: row {number}: '{key}' is {kind} where row {seen[1]} has {seen[0]}"
    return None


def _leaf_kinds(value: object, path: str) -> Iterator[tuple[str, str]]:
    """(field path, kind) for every value in a row; list items share the path ``name[]``."""
    if isinstance(value, dict):
        if path:
            yield path, "an object"
        for key, item in value.items():
            yield from _leaf_kinds(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        yield path, "a list"
        for item in value:
            yield from _leaf_kinds(item, f"{path}[]")
    elif value is not None:
        yield path, _kind(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    return "a list" if isinstance(value, list) else "an object"


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except json.JSONDecodeError:
        return False


def _reason(path: Path, err: Exception) -> str:
    cause = err.__cause__ or err.__context__ or err
    return f"{path}: cannot read ({first_line(cause)})"
