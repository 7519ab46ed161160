"""Labelled texts for stage ``cls``: one text and one label per row, and the label names.

``dataset_info.json`` names the columns with the keys LLaMA-Factory already has:
``columns.prompt`` is the text (default ``text``), ``columns.response`` the label (default
``label``). Labels may be text or whole numbers; both become label names (strings). The
label set comes from the training split (or ``label_names``), so a validation label that no
output of the classifier could ever predict is reported before training, not discovered as
a wrong accuracy afterwards.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from tuneforge.data.formats import MAX_REPORTED_ROWS
from tuneforge.data.registry import DatasetSpec
from tuneforge.errors import DataError

logger = logging.getLogger(__name__)

TEXT_COLUMN = "text"
LABEL_COLUMN = "label"
LABELLED_FEATURES = datasets.Features(
    {"text": datasets.Value("string"), "label": datasets.Value("string")}
)
CLS_COLUMN_KEYS = {"prompt": "text", "response": "label"}


@dataclass(frozen=True)
class EncodedLabels:
    """Token ids and label ids of one split, and how many texts were cut to cutoff_len."""

    rows: datasets.Dataset
    truncated: int


def to_labelled(rows: datasets.Dataset, where: str, spec: DatasetSpec) -> datasets.Dataset:
    """Rows -> ``text`` / ``label`` (label as its name); every bad row named, up to ten."""
    wrong = [key for key in spec.columns if key not in CLS_COLUMN_KEYS]
    if wrong:
        raise DataError(
            f"dataset '{spec.name}': columns.{wrong[0]} does not apply to stage cls "
            f"(it reads columns.prompt: the text, columns.response: the label)"
        )
    text_column = spec.columns.get("prompt", TEXT_COLUMN)
    label_column = spec.columns.get("response", LABEL_COLUMN)
    for key, column in (("prompt", text_column), ("response", label_column)):
        if column not in rows.column_names:
            how = "" if key in spec.columns else f"; set columns.{key} in dataset_info.json"
            raise DataError(
                f"{where}: no {CLS_COLUMN_KEYS[key]} column '{column}' (stage cls); "
                f"the file has: {', '.join(rows.column_names)}{how}"
            )
    texts: list[str] = []
    labels: list[str] = []
    problems: list[str] = []
    pairs = zip(rows[text_column], rows[label_column], strict=True)
    for number, (text, label) in enumerate(pairs, start=1):
        name = label_name(label)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{where}: row {number}: empty text in '{text_column}'")
        elif name is None:
            problems.append(
                f"{where}: row {number}: '{label_column}' is {label!r}; expected a "
                f"label (text or a whole number)"
            )
        else:
            texts.append(text)
            labels.append(name)
    if problems:
        more = len(problems) - MAX_REPORTED_ROWS
        raise DataError(
            *problems[:MAX_REPORTED_ROWS],
            f"... and {more} more rows with problems" if more > 0 else "",
        )
    return datasets.Dataset.from_dict({"text": texts, "label": labels}, features=LABELLED_FEATURES)


def label_name(value: Any) -> str | None:
    """A label as text: strings stripped, whole numbers (also 3.0 from CSV) as digits."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def _label_order(name: str) -> tuple[bool, int, str]:
    """Numeric labels in numeric order (2 before 10), then text labels alphabetically."""
    numeric = name.lstrip("-").isdigit()
    return (not numeric, int(name) if numeric else 0, name)


def label_names(configured: Sequence[str] | None, train_labels: Sequence[str]) -> tuple[str, ...]:
    """The class names in id order: ``label_names`` if given, else the sorted training labels."""
    counts = Counter(train_labels)
    if len(counts) < 2:
        only = next(iter(counts), "")
        raise DataError(
            f"the training data has a single class ('{only}'); a classifier needs "
            f"at least two labels (check columns.response in dataset_info.json)"
        )
    if not configured:
        return tuple(sorted(counts, key=_label_order))
    unknown = sorted(set(counts) - set(configured), key=_label_order)
    if unknown:
        raise DataError(
            f"label_names: the training data has labels not in label_names: "
            f"{', '.join(unknown)}; allowed: {', '.join(configured)}"
        )
    return tuple(configured)


def check_seen(eval_labels: Sequence[str], train_labels: Sequence[str], where: str) -> None:
    """Refuse labels no training example had: the model could never learn to output them."""
    seen = set(train_labels)
    unseen = Counter(label for label in eval_labels if label not in seen)
    if unseen:
        listed = ", ".join(f"'{name}' ({count} rows)" for name, count in unseen.most_common(5))
        known = ", ".join(sorted(seen, key=_label_order))
        raise DataError(
            f"{where}: labels never seen in training: {listed}; the training data has: {known}"
        )


def class_counts(labels: Sequence[str], names: Sequence[str]) -> str:
    """``neg 600 / pos 640``: how balanced the classes are."""
    counts = Counter(labels)
    return " / ".join(f"{name} {counts.get(name, 0):,}" for name in names)


def encode_labelled(
    rows: datasets.Dataset, tokenizer: Any, names: Sequence[str], cutoff_len: int
) -> EncodedLabels:
    """``input_ids`` cut to cutoff_len (the start of the text is kept) and ``labels`` ids."""
    ids = {name: index for index, name in enumerate(names)}
    tokens = tokenizer(list(rows["text"]))["input_ids"]
    truncated = sum(len(t) > cutoff_len for t in tokens)
    encoded = datasets.Dataset.from_dict(
        {
            "input_ids": [list(t[:cutoff_len]) for t in tokens],
            "labels": [ids[label] for label in rows["label"]],
        },
        features=datasets.Features(
            {"input_ids": datasets.List(datasets.Value("int32")), "labels": datasets.Value("int64")}
        ),
    )
    return EncodedLabels(encoded, truncated)
