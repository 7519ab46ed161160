"""docs/llamafactory.md says what tuneforge does with each LLaMA-Factory key; these tests hold
every row to what `load_config` (and, for export and inference keys, the YAML readers of
`config.deploy`) really does, so the page cannot drift from the code.

A failure names the rows to change: a key that became supported must be marked so, a new
schema field or refused key must get a row, and a refused key's note must give the reason
the loader prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tuneforge.config.deploy import read_export_config, read_infer_config
from tuneforge.config.deploy_args import (
    ENGINE_PREFIXES,
    EXPORT_QUANTIZATION,
    EXPORT_QUANTIZATION_KEYS,
    REFUSED_EXPORT_KEYS,
    ExportArgs,
    InferArgs,
    in_training_config,
    yaml_kind,
)
from tuneforge.config.load import (
    FIXED_KEYS,
    RENAMED_KEYS,
    REPLACED_KEYS,
    UNSUPPORTED_KEYS,
    load_config,
)
from tuneforge.config.schema import SECTIONS, field_owner
from tuneforge.errors import ConfigError

DOC = Path(__file__).resolve().parents[2] / "docs" / "llamafactory.md"
# The sections that list keys without a status, by their heading.
KEY_LISTS = ("## transformers TrainingArguments keys tuneforge accepts", "## tuneforge's own keys")
ROW = re.compile(r"^\| `(?P<key>[a-z0-9_]+)` \| (?P<status>[^|]+?) \| (?P<note>[^|]*?) ?\|$")
KEY_LIST = re.compile(r"^`[a-z0-9_]+`(, `[a-z0-9_]+`)*,?$")
RENAMED = re.compile(r"^renamed to `(?P<target>[a-z0-9_]+)`(?P<negated> \(negated\))?$")
# The statuses besides "renamed to `x`"; an export or inference YAML status names the kind
# of file (`deploy_args.yaml_kind`) that reads the key.
STATUSES = ("supported", "accepted", "refused", "export YAML", "inference YAML")
DEPLOY_STATUS = {"export YAML": "export", "inference YAML": "inference"}
# Notes of export/inference rows whose key that YAML refuses too start with this.
REFUSED_THERE = "refused there"
# A config that is valid without any of the keys under test (no file is read).
BASE = {"dataset": "demo"}
# Values tried, in order, until one is valid for a renamed key's target and not its default.
SAMPLES: tuple[object, ...] = (7, True, "chatml", "no")
# Values tried, in order, until one is valid for an export or inference field.
DEPLOY_SAMPLES: tuple[object, ...] = (True, 2, 0.5, "auto", "vllm", "out")


@dataclass(frozen=True)
class Row:
    key: str
    status: str
    note: str


def _parse(text: str) -> tuple[list[Row], list[str]]:
    """The table rows, and the keys of the sections that only list them."""
    rows: list[Row] = []
    listed: list[str] = []
    heading = ""
    for line in text.splitlines():
        if line.startswith("#"):
            heading = line.strip()
        elif heading in KEY_LISTS and KEY_LIST.match(line):
            listed += re.findall(r"`([a-z0-9_]+)`", line)
        elif match := ROW.match(line):
            rows.append(Row(match["key"], match["status"], match["note"]))
        elif line.startswith("| `"):
            raise AssertionError(f"docs/llamafactory.md: cannot read the table row {line!r}")
    return rows, listed


ROWS, LISTED = _parse(DOC.read_text(encoding="utf-8"))
OWNER = field_owner()
# The keys the loader names as LLaMA-Factory's, with the reason it gives.
REASONS: dict[str, str] = {**UNSUPPORTED_KEYS, **REPLACED_KEYS}


def _rows(status: str) -> list[Row]:
    return [row for row in ROWS if row.status == status]


def _problems(raw: dict[str, object]) -> dict[str | None, str]:
    """The problem message for each key that `load_config` reports, or {} when it is valid."""
    try:
        load_config({**BASE, **raw})
    except ConfigError as exc:
        return {problem.key: problem.message for problem in exc.problems}
    return {}


def _plain(note: str) -> str:
    """A note as the loader would print it: the page's code marks taken out."""
    return note.replace("`", "")


def _supported_problems(row: Row) -> list[str]:
    if row.key not in OWNER:
        return [f"{row.key}: marked supported, but no schema section has it"]
    return []


def _refused_problems(row: Row) -> list[str]:
    """A refused row: the loader names the key with its reason, and the note gives it."""
    key = row.key
    if key in OWNER:
        return [f"{key}: accepted now (section {OWNER[key]}); mark it supported"]
    if (kind := yaml_kind(key)) is not None:
        return [f"{key}: deploy_args reads it in {kind} YAMLs; mark it `{kind} YAML`"]
    if key not in REASONS:
        message = _problems({key: True}).get(key)
        return [
            f"{key}: in neither UNSUPPORTED_KEYS nor REPLACED_KEYS "
            f"(llamafactory_keys.py); load_config says {message!r}"
        ]
    wrong = []
    message = _problems({key: True}).get(key)
    reason = REASONS[key]
    if message is None or f"'{key}'" not in message or reason not in message:
        wrong.append(f"{key}: load_config says {message!r}, without the reason {reason!r}")
    if reason not in _plain(row.note):
        wrong.append(f"{key}: the note must give the loader's reason: {reason!r}")
    return wrong


def _deploy_value(model: type[ExportArgs] | type[InferArgs], key: str) -> object:
    """A value the field accepts that is not its default."""
    default = model.model_fields[key].default
    for value in DEPLOY_SAMPLES:
        try:
            parsed = getattr(model(**{key: value}), key)
        except ValidationError:
            continue
        if parsed != default:
            return value
    raise AssertionError(f"no value in {DEPLOY_SAMPLES} is valid for {key}")


def _deploy_problems(row: Row) -> list[str]:
    """An export or inference YAML row: a training config says where the key goes, and the
    YAML read by that command takes it as a field or refuses it with its own line."""
    key, kind = row.key, DEPLOY_STATUS[row.status]
    if key in OWNER:
        return [f"{key}: a run config key now (section {OWNER[key]}); mark it supported"]
    if yaml_kind(key) != kind:
        return [f"{key}: deploy_args puts it in {yaml_kind(key)} YAMLs, not {kind} YAMLs"]
    wrong = []
    message = _problems({key: True}).get(key)
    if message != in_training_config(key):
        wrong.append(f"{key}: in a training config, load_config says {message!r}")
    model: type[ExportArgs] | type[InferArgs] = ExportArgs if kind == "export" else InferArgs
    read: Callable[..., Any] = read_export_config if kind == "export" else read_infer_config
    # The line the export YAML gives for the LLaMA-Factory export features it does not have.
    refusal = (
        EXPORT_QUANTIZATION if key in EXPORT_QUANTIZATION_KEYS else REFUSED_EXPORT_KEYS.get(key)
    )
    # What the YAML needs besides the key: an export's destination, an engine's backend.
    given: dict[str, object] = {"export_dir": "out"} if kind == "export" else {}
    for prefix, engine in ENGINE_PREFIXES.items():
        if key.startswith(prefix):
            given["infer_backend"] = engine
    if refusal is None:
        if key not in model.model_fields:
            return [f"{key}: neither a field of {model.__name__} nor refused by it"]
        value = _deploy_value(model, key)
        try:
            args = read(None, {**given, key: value}).args
        except ConfigError as exc:
            wrong.append(f"{key}: the {kind} YAML refuses {key}={value!r}: {exc}")
        else:
            if getattr(args, key) != getattr(model(**{key: value}), key):
                wrong.append(f"{key}: the {kind} YAML did not keep {key}={value!r}")
        if row.note.startswith(REFUSED_THERE):
            wrong.append(f"{key}: the {kind} YAML accepts it; the note says {REFUSED_THERE!r}")
    else:
        try:
            read(None, {**given, key: 4})
        except ConfigError as exc:
            lines = [problem.message for problem in exc.problems if problem.key == key]
        else:
            lines = []
        if lines != [f"{key}: {refusal}"]:
            wrong.append(f"{key}: the {kind} YAML says {lines!r}, not its refusal {refusal!r}")
        if not row.note.startswith(REFUSED_THERE):
            wrong.append(f"{key}: the {kind} YAML refuses it; start the note {REFUSED_THERE!r}")
    return wrong


def _row_problems(row: Row) -> list[str]:
    """What is wrong with a row whose status is not "renamed to `x`"."""
    if row.status == "supported":
        return _supported_problems(row)
    if row.status == "refused":
        return _refused_problems(row)
    if row.status in DEPLOY_STATUS:
        return _deploy_problems(row)
    if row.key in OWNER:
        return [f"{row.key}: accepted now (section {OWNER[row.key]}); mark it supported"]
    return [f"{row.key}: the status {row.status!r} is none of {', '.join(STATUSES)}"]


def test_the_page_has_tables_and_lists() -> None:
    assert len(ROWS) > 200, "the tables of docs/llamafactory.md were not found"
    assert len(LISTED) > 30, "the key lists of docs/llamafactory.md were not found"
    assert _problems({}) == {}, "the base config of these tests is no longer valid"


def test_no_key_is_listed_twice() -> None:
    keys = [row.key for row in ROWS] + LISTED
    twice = sorted({key for key in keys if keys.count(key) > 1})
    assert not twice, f"listed more than once: {', '.join(twice)}"


def test_every_row_has_a_known_status() -> None:
    """No "unknown": each LLaMA-Factory key is accepted, renamed, refused with its reason, or
    read by the export or inference YAML."""
    odd = [
        f"{row.key}: {row.status}"
        for row in ROWS
        if row.status not in STATUSES and not RENAMED.match(row.status)
    ]
    assert not odd, (
        f"statuses other than {', '.join(STATUSES)} or renamed to `x` (an unknown key gets "
        "a reason in UNSUPPORTED_KEYS, or a sentence in REPLACED_KEYS):\n" + "\n".join(odd)
    )


def test_supported_keys_are_schema_fields() -> None:
    wrong = [line for row in _rows("supported") for line in _supported_problems(row)]
    assert not wrong, "\n".join(wrong)


def test_every_schema_field_is_on_the_page() -> None:
    """A new field must be placed: a LLaMA-Factory row, the transformers list or tuneforge's own."""
    on_page = {row.key for row in ROWS if row.status == "supported"} | set(LISTED)
    absent = sorted(set(OWNER) - on_page)
    assert not absent, f"schema fields the page does not list as accepted: {', '.join(absent)}"
    not_fields = sorted(set(LISTED) - set(OWNER))
    assert not not_fields, f"listed as accepted, but not schema fields: {', '.join(not_fields)}"


def test_every_key_the_loader_names_is_a_refused_row() -> None:
    rows = {row.key: row.status for row in ROWS}
    wrong = []
    for name, keys in (
        ("UNSUPPORTED_KEYS", UNSUPPORTED_KEYS),
        ("REPLACED_KEYS", REPLACED_KEYS),
        ("RENAMED_KEYS", RENAMED_KEYS),
    ):
        wrong += [f"{key} ({name}): no row" for key in sorted(set(keys) - set(rows))]
        if name != "RENAMED_KEYS":
            wrong += [
                f"{key} ({name}): the row says {rows[key]!r}, not refused"
                for key in sorted(set(keys) & set(rows))
                if rows[key] != "refused"
            ]
    assert not wrong, "\n".join(wrong)


def test_accepted_keys_say_what_tuneforge_always_does() -> None:
    """An `accepted` key is one of FIXED_KEYS: its LLaMA-Factory values pass, any other is
    refused with the reason the row gives."""
    rows = {row.key: row for row in ROWS if row.status == "accepted"}
    wrong = [f"{key}: in FIXED_KEYS, the row says otherwise" for key in set(FIXED_KEYS) - set(rows)]
    for key, row in rows.items():
        if key not in FIXED_KEYS:
            wrong.append(f"{key}: accepted on the page, not in FIXED_KEYS")
            continue
        allowed, reason = FIXED_KEYS[key]
        if reason not in _plain(row.note):
            wrong.append(f"{key}: the note should give the reason {reason!r}")
        wrong += [f"{key}={value!r} is refused" for value in allowed if _problems({key: value})]
        if False not in allowed and key not in _problems({key: False}):
            wrong.append(f"{key}=False is accepted, but FIXED_KEYS allows only {allowed}")
    assert not wrong, "\n".join(wrong)


def test_refused_keys_are_refused_with_the_reason_on_the_page() -> None:
    wrong = [line for row in _rows("refused") for line in _refused_problems(row)]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("status", list(DEPLOY_STATUS))
def test_export_and_inference_keys_go_to_their_yaml(status: str) -> None:
    wrong = [line for row in _rows(status) for line in _deploy_problems(row)]
    assert not wrong, "\n".join(wrong)


def test_every_export_and_inference_key_has_its_row() -> None:
    rows = {row.key: row.status for row in ROWS}
    keys = {
        *ExportArgs.model_fields,
        *InferArgs.model_fields,
        *EXPORT_QUANTIZATION_KEYS,
        *REFUSED_EXPORT_KEYS,
    }
    wrong = [
        f"{key}: the row says {rows.get(key)!r}, not `{yaml_kind(key)} YAML`"
        for key in sorted(keys)
        if rows.get(key) != f"{yaml_kind(key)} YAML"
    ]
    assert not wrong, "\n".join(wrong)


def _sample(target: str) -> object:
    """A value the target field accepts that is not its default."""
    section = SECTIONS[OWNER[target]]
    default = getattr(section(), target)
    for value in SAMPLES:
        if not _problems({target: value}):
            loaded = load_config({**BASE, target: value})
            if getattr(getattr(loaded, OWNER[target]), target) != default:
                return value
    raise AssertionError(f"no value in {SAMPLES} sets {target} to something else than its default")


@pytest.mark.parametrize(
    "row", [row for row in ROWS if row.status.startswith("renamed")], ids=lambda row: row.key
)
def test_renamed_keys_set_the_key_named(row: Row) -> None:
    match = RENAMED.match(row.status)
    assert match, row.status
    target = match["target"]
    assert target in OWNER, f"{row.key}: the target {target!r} is not a schema field"
    assert row.key not in OWNER, f"{row.key} is a schema field itself now; mark it supported"
    if row.key in RENAMED_KEYS:
        assert RENAMED_KEYS[row.key] == target
    value = _sample(target)
    given = (not value) if match["negated"] else value
    loaded = load_config({**BASE, row.key: given}).flat()
    assert row.key not in loaded
    assert loaded == load_config({**BASE, target: value}).flat()
