"""Rows read leniently: what ``tuneforge data inspect`` and ``data clean`` look at.

Rows are read through the same registry, file readers and format converters as training,
but a row that training would refuse is kept, with why, instead of stopping the read, so the
caller can count the rows that are empty or unusable (inspect) or drop them with a reason
(clean).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from tuneforge.config.schema import RunConfig
from tuneforge.data import files, formats, labelled, registry, streaming
from tuneforge.data.formats import Message, RowConverter
from tuneforge.errors import ConfigError

# Columns a row may leave empty without being broken (alpaca's input, a missing system...).
OPTIONAL_COLUMNS = ("query", "system", "history", "tools")


@dataclass(frozen=True)
class Sample:
    """One row as read: its conversation (sft), text (pt, cls) and label, or why it is unusable."""

    dataset: str
    where: str
    row: int
    messages: tuple[Message, ...] = ()
    tools: str | None = None
    text: str | None = None
    label: str | None = None
    problem: str | None = None
    empty_fields: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        return f"{self.where}: row {self.row}"

    def contents(self) -> str:
        """All the sample's text, for language detection and exact comparison."""
        if self.text is not None:
            return self.text
        return "\n".join(message["content"] for message in self.messages)


def read_samples(cfg: RunConfig, limit: int | None = None) -> list[Sample]:
    """Every row of the configured training datasets, usable or not, in file order; with
    `limit`, only each dataset's first rows, streamed (the rest is never read)."""
    data = cfg.data
    if not data.dataset:
        raise ConfigError(
            f"dataset: not set; name one or more datasets registered in "
            f"{data.dataset_dir}/{registry.INFO_FILE}"
        )
    samples: list[Sample] = []
    for spec in registry.resolve(list(dict.fromkeys(data.dataset)), data.dataset_dir):
        sources = (
            files.iter_files(spec, cfg.model.cache_dir)
            if limit is None
            else streaming.head_files(spec, cfg.model.cache_dir, limit)
        )
        for where, rows in sources:
            samples.extend(_read_rows(spec, where, rows, cfg.finetune.stage))
    return samples


def _read_rows(spec: registry.DatasetSpec, where: str, rows: Any, stage: str) -> Iterator[Sample]:
    if not len(rows):
        return
    if stage == "cls":
        text_column = spec.columns.get("prompt", labelled.TEXT_COLUMN)
        label_column = spec.columns.get("response", labelled.LABEL_COLUMN)
        for index, row in enumerate(tqdm(rows, desc=f"Reading {where}", leave=False)):
            text, label = row.get(text_column), labelled.label_name(row.get(label_column))
            problem = (
                f"empty text in '{text_column}'"
                if not isinstance(text, str) or not text.strip()
                else None
                if label is not None
                else f"'{label_column}' is {row.get(label_column)!r}, not a label"
            )
            yield Sample(
                spec.name,
                where,
                index + 1,
                text=text if isinstance(text, str) else "",
                label=label,
                problem=problem,
                empty_fields=_empty_fields(row, ()),
            )
        return
    fmt = formats.resolve_format(spec, where, rows, stage)
    convert = RowConverter(fmt, where)
    optional = [fmt.columns[key] for key in OPTIONAL_COLUMNS if key in fmt.columns]
    has_label = labelled.LABEL_COLUMN in rows.column_names
    for index, row in enumerate(tqdm(rows, desc=f"Reading {where}", leave=False)):
        converted = convert(row, index)
        problem = converted["error"]
        label = labelled.label_name(row.get(labelled.LABEL_COLUMN)) if has_label else None
        yield Sample(
            spec.name,
            where,
            index + 1,
            messages=tuple(converted.get("messages") or ()),
            tools=converted.get("tools"),
            text=converted.get("text"),
            label=label,
            problem=problem.removeprefix(f"{where}: row {index + 1}: ") if problem else None,
            empty_fields=_empty_fields(row, optional),
        )


def _empty_fields(row: dict[str, Any], optional: Sequence[str]) -> tuple[str, ...]:
    """Paths of the row's empty or whitespace-only strings, e.g. ``output``,
    ``conversations[].value``; columns that may be empty are left out."""
    found: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            if not value.strip():
                found.append(path)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{path}[]")

    for column, value in row.items():
        if column not in optional:
            walk(value, column)
    return tuple(dict.fromkeys(found))
