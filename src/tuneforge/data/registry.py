"""``dataset_info.json``: LLaMA-Factory's dataset registry, validated strictly.

LLaMA-Factory ignores keys it does not know, so a typo (``format`` for ``formatting``) silently
falls back to a default and fails much later with a KeyError. Here every key of every entry is
checked against the known names with a did-you-mean, the entries a run asks for are checked
for unsupported features and missing files, and all problems are reported together.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tuneforge.errors import DataError
from tuneforge.messages import did_you_mean
from tuneforge.userfiles import kind_of, read_utf8

INFO_FILE = "dataset_info.json"
FORMATTINGS = ("alpaca", "sharegpt", "openai")

# Entry keys tuneforge reads, and their JSON types (file_sha1 is accepted and unused, as in
# LLaMA-Factory).
ENTRY_KEYS: Mapping[str, type] = MappingProxyType(
    {
        "file_name": str,
        "hf_hub_url": str,
        "formatting": str,
        "columns": dict,
        "tags": dict,
        "subset": str,
        "split": str,
        "folder": str,
        "revision": str,
        "num_samples": int,
        "ranking": bool,
        "file_sha1": str,
    }
)
# LLaMA-Factory entry keys for features tuneforge does not have.
UNSUPPORTED_ENTRY_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "ms_hub_url": "ModelScope datasets",
        "om_hub_url": "Modelers (openmind) datasets",
        "script_url": "dataset loading scripts",
        "cloud_file_name": "cloud storage files",
    }
)
COLUMN_KEYS = frozenset(
    {
        "prompt",
        "query",
        "response",
        "history",
        "messages",
        "system",
        "tools",
        "chosen",
        "rejected",
        "kto_tag",
    }
)
UNSUPPORTED_COLUMN_KEYS: Mapping[str, str] = MappingProxyType(
    {
        "images": "image inputs",
        "videos": "video inputs",
        "audios": "audio inputs",
    }
)
TAG_KEYS = frozenset(
    {
        "role_tag",
        "content_tag",
        "user_tag",
        "assistant_tag",
        "observation_tag",
        "function_tag",
        "system_tag",
    }
)
HUB_ONLY_KEYS = ("subset", "folder", "revision")


@dataclass(frozen=True)
class DatasetSpec:
    """One validated registry entry: where the rows come from and how to read them."""

    name: str
    path: Path | None = None
    hub_id: str | None = None
    formatting: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    subset: str | None = None
    split: str = "train"
    folder: str | None = None
    revision: str | None = None
    num_samples: int | None = None
    ranking: bool = False


def resolve(names: Sequence[str], dataset_dir: str | Path) -> list[DatasetSpec]:
    """Look up `names` in ``<dataset_dir>/dataset_info.json``; raise once with every problem."""
    info_path = Path(dataset_dir) / INFO_FILE
    info = _read_info(info_path)
    problems: list[str] = []
    for name, entry in info.items():
        if isinstance(entry, dict):
            problems += _unknown_keys(info_path, name, entry)
        else:
            problems.append(
                f"{info_path}: dataset '{name}': must be an object, not {type(entry).__name__}"
            )
    specs = []
    for name in names:
        if name not in info:
            problems.append(_not_registered(info_path, name, list(info)))
            continue
        entry = info[name]
        if not isinstance(entry, dict):
            continue
        entry_problems = _entry_problems(info_path, name, entry)
        problems += entry_problems
        if not entry_problems and not _unknown_keys(info_path, name, entry):
            specs.append(_spec(info_path.parent, name, entry))
    if problems:
        raise DataError(*dict.fromkeys(problems))
    return specs


def registered(dataset_dir: str | Path) -> list[str]:
    """The dataset names ``<dataset_dir>/dataset_info.json`` registers, in file order (the
    WebUI's dataset picker); entries are checked when `resolve` is asked for them."""
    return list(_read_info(Path(dataset_dir) / INFO_FILE))


def _read_info(info_path: Path) -> dict[str, Any]:
    if kind_of(info_path) != "file":
        raise DataError(
            f"{info_path}: not found; create it to register datasets "
            f"(or set dataset_dir to the folder that holds it)"
        )
    try:
        info = json.loads(read_utf8(info_path, DataError))
    except json.JSONDecodeError as err:
        raise DataError(f"{info_path}:{err.lineno}: invalid JSON ({err.msg})") from None
    except RecursionError:
        raise DataError(f"{info_path}: nested too deeply to be a dataset registry") from None
    if not isinstance(info, dict):
        raise DataError(f"{info_path}: must be a JSON object mapping dataset names to entries")
    return info


def _unknown_keys(info_path: Path, name: str, entry: Mapping[str, Any]) -> list[str]:
    where = f"{info_path}: dataset '{name}'"
    known = [*ENTRY_KEYS, *UNSUPPORTED_ENTRY_KEYS]
    problems = [
        f"{where}: unknown key '{key}'{did_you_mean(key, known)}"
        for key in entry
        if key not in known
    ]
    for section, allowed in (
        ("columns", [*COLUMN_KEYS, *UNSUPPORTED_COLUMN_KEYS]),
        ("tags", sorted(TAG_KEYS)),
    ):
        value = entry.get(section)
        if isinstance(value, dict):
            problems += [
                f"{where}: unknown key '{section}.{key}'{did_you_mean(key, allowed)}"
                for key in value
                if key not in allowed
            ]
    return problems


def _entry_problems(info_path: Path, name: str, entry: Mapping[str, Any]) -> list[str]:
    where = f"{info_path}: dataset '{name}'"
    problems = [
        f"{where}: {key} ({what}) is not supported yet"
        for key, what in UNSUPPORTED_ENTRY_KEYS.items()
        if key in entry
    ]
    for key, expected in ENTRY_KEYS.items():
        value = entry.get(key)
        if value is not None and (
            not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        ):
            problems.append(
                f"{where}: '{key}' must be {_type_name(expected)}, not {type(value).__name__}"
            )
    for section in ("columns", "tags"):
        mapping = entry.get(section)
        for key, value in mapping.items() if isinstance(mapping, dict) else ():
            if section == "columns" and key in UNSUPPORTED_COLUMN_KEYS:
                problems.append(
                    f"{where}: columns.{key} ({UNSUPPORTED_COLUMN_KEYS[key]}) is not supported yet"
                )
            elif not isinstance(value, str):
                problems.append(
                    f"{where}: '{section}.{key}' must be a string (a column or "
                    f"key name), not {type(value).__name__}"
                )
    formatting = entry.get("formatting")
    if isinstance(formatting, str) and formatting not in FORMATTINGS:
        problems.append(
            f"{where}: formatting '{formatting}' is not one of "
            f"{', '.join(FORMATTINGS)}{did_you_mean(formatting, FORMATTINGS)}"
        )
    if isinstance(entry.get("num_samples"), int) and entry["num_samples"] < 1:
        problems.append(f"{where}: 'num_samples' must be at least 1")
    return problems + _source_problems(info_path, name, entry)


def _source_problems(info_path: Path, name: str, entry: Mapping[str, Any]) -> list[str]:
    where = f"{info_path}: dataset '{name}'"
    has_file, has_hub = "file_name" in entry, "hf_hub_url" in entry
    if any(key in entry for key in UNSUPPORTED_ENTRY_KEYS) and not (has_file or has_hub):
        return []
    if has_file == has_hub:
        return [
            f"{where}: needs exactly one of 'file_name' (a local file or folder) and 'hf_hub_url'"
        ]
    if has_hub:
        return []
    problems = [
        f"{where}: '{key}' applies to hf_hub_url datasets only"
        for key in HUB_ONLY_KEYS
        if key in entry
    ]
    if entry.get("split", "train") != "train":
        problems.append(
            f"{where}: 'split' applies to hf_hub_url datasets only "
            f"(a local file is one 'train' split)"
        )
    if isinstance(entry["file_name"], str):
        path = info_path.parent / entry["file_name"]
        if kind_of(path) is None:
            problems.append(f"{path}: not found (file_name of dataset '{name}' in {info_path})")
    return problems


def _not_registered(info_path: Path, name: str, available: list[str]) -> str:
    shown = ", ".join(available[:10]) + (", ..." if len(available) > 10 else "")
    hint = did_you_mean(name, available, n=3) or (
        f"; available: {shown}" if available else "; the file registers no datasets"
    )
    return f"{info_path}: no dataset named '{name}'{hint}"


def _type_name(expected: type) -> str:
    return {str: "a string", int: "a whole number", bool: "true or false", dict: "an object"}[
        expected
    ]


def _spec(dataset_dir: Path, name: str, entry: Mapping[str, Any]) -> DatasetSpec:
    return DatasetSpec(
        name=name,
        path=dataset_dir / entry["file_name"] if "file_name" in entry else None,
        hub_id=entry.get("hf_hub_url"),
        formatting=entry.get("formatting"),
        columns=MappingProxyType(dict(entry.get("columns") or {})),
        tags=MappingProxyType(dict(entry.get("tags") or {})),
        subset=entry.get("subset"),
        split=entry.get("split", "train"),
        folder=entry.get("folder"),
        revision=entry.get("revision"),
        num_samples=entry.get("num_samples"),
        ranking=bool(entry.get("ranking")),
    )
