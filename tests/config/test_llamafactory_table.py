"""docs/llamafactory.md says what tuneforge does with each LLaMA-Factory key; these tests hold
every row to what `load_config` really does, so the page cannot drift from the code.

A failure names the rows to change: a key that became supported must be marked so, a new
schema field or refused key must get a row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tuneforge.config.load import (
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
# A config that is valid without any of the keys under test (no file is read).
BASE = {"dataset": "demo"}
# Values tried, in order, until one is valid for a renamed key's target and not its default.
SAMPLES: tuple[object, ...] = (7, True, "chatml", "no")


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


def _rows(status: str) -> list[Row]:
    return [row for row in ROWS if row.status == status]


def _problems(raw: dict[str, object]) -> dict[str | None, str]:
    """The problem message for each key that `load_config` reports, or {} when it is valid."""
    try:
        load_config({**BASE, **raw})
    except ConfigError as exc:
        return {problem.key: problem.message for problem in exc.problems}
    return {}


def test_the_page_has_tables_and_lists() -> None:
    assert len(ROWS) > 200, "the tables of docs/llamafactory.md were not found"
    assert len(LISTED) > 30, "the key lists of docs/llamafactory.md were not found"
    assert _problems({}) == {}, "the base config of these tests is no longer valid"


def test_no_key_is_listed_twice() -> None:
    keys = [row.key for row in ROWS] + LISTED
    twice = sorted({key for key in keys if keys.count(key) > 1})
    assert not twice, f"listed more than once: {', '.join(twice)}"


def test_every_status_is_one_of_the_four() -> None:
    known = {"supported", "refused", "unknown"}
    odd = [f"{row.key}: {row.status}" for row in ROWS if row.status not in known]
    odd = [line for line in odd if not RENAMED.match(line.partition(": ")[2])]
    assert not odd, "statuses other than supported, refused, unknown, renamed to `x`:\n" + (
        "\n".join(odd)
    )


def test_supported_keys_are_schema_fields() -> None:
    missing = [row.key for row in _rows("supported") if row.key not in OWNER]
    assert not missing, f"marked supported, but no schema section has it: {', '.join(missing)}"


def test_every_schema_field_is_on_the_page() -> None:
    """A new field must be placed: a LLaMA-Factory row, the transformers list or tuneforge's own."""
    on_page = {row.key for row in _rows("supported")} | set(LISTED)
    absent = sorted(set(OWNER) - on_page)
    assert not absent, f"schema fields the page does not list as accepted: {', '.join(absent)}"
    not_fields = sorted(set(LISTED) - set(OWNER))
    assert not not_fields, f"listed as accepted, but not schema fields: {', '.join(not_fields)}"


def test_every_key_the_loader_names_has_a_row() -> None:
    rows = {row.key for row in ROWS}
    for name, keys in (
        ("UNSUPPORTED_KEYS", UNSUPPORTED_KEYS),
        ("REPLACED_KEYS", REPLACED_KEYS),
        ("RENAMED_KEYS", RENAMED_KEYS),
    ):
        absent = sorted(set(keys) - rows)
        assert not absent, f"keys of {name} without a row: {', '.join(absent)}"


def test_refused_keys_are_refused_by_name() -> None:
    wrong = []
    for row in _rows("refused"):
        message = _problems({row.key: True}).get(row.key)
        if row.key in OWNER:
            wrong.append(f"{row.key}: accepted now (section {OWNER[row.key]}); mark it supported")
        elif row.key not in UNSUPPORTED_KEYS | set(REPLACED_KEYS):
            wrong.append(f"{row.key}: in neither UNSUPPORTED_KEYS nor REPLACED_KEYS")
        elif message is None or message.startswith("unknown key"):
            wrong.append(f"{row.key}: load_config says {message!r}")
    assert not wrong, "\n".join(wrong)


def test_unknown_keys_are_rejected_as_unknown() -> None:
    wrong = []
    for row in _rows("unknown"):
        message = _problems({row.key: True}).get(row.key)
        if row.key in OWNER:
            wrong.append(f"{row.key}: accepted now (section {OWNER[row.key]}); mark it supported")
        elif row.key in UNSUPPORTED_KEYS | set(REPLACED_KEYS):
            wrong.append(f"{row.key}: the loader names it as a LLaMA-Factory key; mark it refused")
        elif row.key in RENAMED_KEYS:
            wrong.append(f"{row.key}: renamed to {RENAMED_KEYS[row.key]!r} now")
        elif message is None or not message.startswith(f"unknown key {row.key!r}"):
            wrong.append(f"{row.key}: load_config says {message!r}")
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
