"""Preference rows -> prompts with answers people prefer or not, for stages rm, dpo and kto.

Pairs (rm, dpo) come from LLaMA-Factory's ``ranking: true`` datasets: alpaca rows with
``chosen``/``rejected`` columns, sharegpt/openai rows whose conversation ends with the user
and whose ``chosen``/``rejected`` are the two answers, and the common ``{prompt, chosen,
rejected}`` form (text, or trl's conversational lists). Marked answers (kto) are rows with a
true/false ``kto_tag`` column (the answer is the conversation's last turn), or pairs split in
two. The prompt goes through the same `formats` readers as SFT rows, so system prompts,
history and tools mean the same here, and every bad row names its file and row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import datasets

from tuneforge.data import formats
from tuneforge.data.formats import Conversation, RowFormat, _RowProblem
from tuneforge.data.registry import DatasetSpec
from tuneforge.errors import DataError

MESSAGES = datasets.List({"role": datasets.Value("string"), "content": datasets.Value("string")})
PAIR_FEATURES = datasets.Features(
    {
        "messages": MESSAGES,
        "tools": datasets.Value("string"),
        "chosen": datasets.Value("string"),
        "rejected": datasets.Value("string"),
    }
)
MARKED_FEATURES = datasets.Features(
    {
        "messages": MESSAGES,
        "tools": datasets.Value("string"),
        "completion": datasets.Value("string"),
        "label": datasets.Value("bool"),
    }
)
# An alpaca prompt read without an answer column: no row has a column named "".
NO_COLUMN = ""


@dataclass(frozen=True)
class PreferenceFormat:
    """How one file's rows hold the prompt (`prompt`, read as SFT rows are) and the answers."""

    prompt: RowFormat
    chosen: str = "chosen"
    rejected: str = "rejected"
    kto_tag: str = "kto_tag"
    ranking: bool = True

    def describe(self) -> str:
        kind = "pairs" if self.ranking else f"answers marked by '{self.kto_tag}'"
        return f"{self.prompt.describe()}, {kind}"


def preference_format(spec: DatasetSpec, where: str, rows: datasets.Dataset) -> PreferenceFormat:
    """The registry's declaration, else detected from the columns; columns checked."""
    names = rows.column_names
    columns = dict(spec.columns)
    answers = {key: columns.pop(key, key) for key in ("chosen", "rejected")}
    kto_tag = columns.pop("kto_tag", "kto_tag" if "kto_tag" in names else "label")
    ranking = spec.ranking or (
        "kto_tag" not in spec.columns and {answers["chosen"], answers["rejected"]} <= set(names)
    )
    first = rows[0] if len(rows) else {}
    if spec.formatting is None and "prompt" in names and "instruction" not in names:
        # trl's form: prompt text or messages; kto rows call their answer "completion".
        columns.setdefault("prompt", "prompt")
        columns.setdefault("response", "completion")
        if isinstance(first.get(columns["prompt"]), list):
            columns = {"messages": columns.pop("prompt")}
    bare = replace(spec, columns=MappingProxyType(columns))
    prompt = formats.resolve_format(bare, where, rows, "sft", answered=not ranking)
    if ranking and prompt.name == "alpaca":
        prompt = RowFormat(
            prompt.name,
            MappingProxyType({**prompt.columns, "response": NO_COLUMN}),
            prompt.tags,
            prompt.detected,
        )
    fmt = PreferenceFormat(prompt, answers["chosen"], answers["rejected"], kto_tag, ranking)
    wanted = [fmt.chosen, fmt.rejected] if ranking else [fmt.kto_tag]
    for column in wanted:
        if column not in names:
            what = "a preference pair's answer" if ranking else "true/false marks for kto"
            raise DataError(
                f"{where}: no column '{column}' ({what}); the file has: {', '.join(names)}; "
                f"set columns in dataset_info.json for dataset '{spec.name}'"
            )
    return fmt


def to_pairs(rows: datasets.Dataset, where: str, fmt: PreferenceFormat) -> datasets.Dataset:
    """Pairs for rm and dpo: the prompt conversation, the chosen and the rejected answer."""
    if not fmt.ranking:
        raise DataError(
            f"{where}: holds answers marked true/false (kto data), not pairs; use stage kto, "
            f"or give chosen and rejected columns with ranking: true"
        )
    return _convert(rows, PairConverter(fmt, where), PAIR_FEATURES, where)


def to_marked(rows: datasets.Dataset, where: str, fmt: PreferenceFormat) -> datasets.Dataset:
    """Answers marked good (true) or bad (false) for kto; each pair gives one of each."""
    if fmt.ranking:
        pairs = _convert(rows, PairConverter(fmt, where), PAIR_FEATURES, where)
        return _convert(pairs, _unpair, MARKED_FEATURES, where, batched=True)
    return _convert(rows, MarkedConverter(fmt, where), MARKED_FEATURES, where)


def check_both_marks(rows: datasets.Dataset, names: str) -> None:
    """KTO learns from the contrast between good and bad answers: it needs both."""
    marks = set(rows["label"])
    if marks != {True, False}:
        only = "true (good)" if True in marks else "false (bad)"
        raise DataError(
            f"stage kto needs answers marked both true and false; {names} has only {only} ones"
        )


def _convert(
    rows: datasets.Dataset,
    converter: Any,
    features: datasets.Features,
    where: str,
    batched: bool = False,
) -> datasets.Dataset:
    with_error = datasets.Features({**features, "error": datasets.Value("string")})
    converted = rows.map(
        converter,
        with_indices=not batched,
        batched=batched,
        remove_columns=rows.column_names,
        features=with_error if not batched else features,
        desc=f"Reading {where}",
    )
    if batched:
        return converted
    errors = [error for error in converted["error"] if error]
    if errors:
        more = len(errors) - formats.MAX_REPORTED_ROWS
        raise DataError(
            *errors[: formats.MAX_REPORTED_ROWS],
            f"... and {more} more rows with problems" if more > 0 else "",
        )
    return converted.remove_columns("error")


def _unpair(batch: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {name: [] for name in MARKED_FEATURES}
    for messages, tools, chosen, rejected in zip(
        batch["messages"], batch["tools"], batch["chosen"], batch["rejected"], strict=True
    ):
        for answer, label in ((chosen, True), (rejected, False)):
            out["messages"].append(messages)
            out["tools"].append(tools)
            out["completion"].append(answer)
            out["label"].append(label)
    return out


@dataclass(frozen=True)
class PairConverter:
    """Picklable row function: one ranking row -> prompt, chosen, rejected (or an error)."""

    fmt: PreferenceFormat
    where: str

    def __call__(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        try:
            prompt = _prompt(row, self.fmt.prompt)
            chosen = _answer(row.get(self.fmt.chosen), self.fmt.chosen, self.fmt.prompt)
            rejected = _answer(row.get(self.fmt.rejected), self.fmt.rejected, self.fmt.prompt)
            if chosen.strip() == rejected.strip():
                raise _RowProblem(
                    f"'{self.fmt.chosen}' and '{self.fmt.rejected}' are the same answer"
                )
        except _RowProblem as problem:
            empty: dict[str, Any] = {
                "messages": [],
                "tools": None,
                "chosen": None,
                "rejected": None,
            }
            return {**empty, "error": f"{self.where}: row {index + 1}: {problem}"}
        return {**prompt, "chosen": chosen, "rejected": rejected, "error": None}


@dataclass(frozen=True)
class MarkedConverter:
    """Picklable row function: one kto row -> prompt, the answer and its true/false mark."""

    fmt: PreferenceFormat
    where: str

    def __call__(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        try:
            mark = row.get(self.fmt.kto_tag)
            if not isinstance(mark, bool):
                raise _RowProblem(f"'{self.fmt.kto_tag}' is {_shown(mark)}; expected true or false")
            conversation = _conversation(row, self.fmt.prompt)
            *prompt, answer = conversation["messages"]
            if answer["role"] != "assistant":
                raise _RowProblem("the last message must be the answer being marked")
        except _RowProblem as problem:
            empty: dict[str, Any] = {
                "messages": [],
                "tools": None,
                "completion": None,
                "label": None,
            }
            return {**empty, "error": f"{self.where}: row {index + 1}: {problem}"}
        return {
            "messages": prompt,
            "tools": conversation["tools"],
            "completion": answer["content"],
            "label": mark,
            "error": None,
        }


def _conversation(row: Mapping[str, Any], fmt: RowFormat, answered: bool = True) -> Conversation:
    if fmt.name == "alpaca":
        return formats._alpaca_row(row, fmt, answered)
    return formats._chat_row(row, fmt, answered)


def _prompt(row: Mapping[str, Any], fmt: RowFormat) -> Conversation:
    conversation = _conversation(row, fmt, answered=False)
    if conversation["messages"][-1]["role"] not in ("user", "observation"):
        column = fmt.columns.get("messages", "")
        raise _RowProblem(
            f"'{column}' ends with an answer; in preference data the conversation ends with "
            f"the user, and the answers are in chosen and rejected"
        )
    return conversation


def _answer(value: object, column: str, fmt: RowFormat) -> str:
    """An answer as text, a message object (``{"from": "gpt", "value": ...}``) or a list
    holding one assistant message (trl's conversational form)."""
    if isinstance(value, list):
        if len(value) != 1:
            raise _RowProblem(f"'{column}' holds {len(value)} messages; expected one answer")
        value = value[0]
    if isinstance(value, dict):
        tags = fmt.tags or formats.DEFAULT_TAGS["openai"]
        key = tags["content_tag"] if tags["content_tag"] in value else "content"
        value = value.get(key, value.get("value"))
    text = formats._text(value, f"'{column}'")
    if text is None:
        raise _RowProblem(f"missing '{column}'")
    if not text.strip():
        raise _RowProblem(f"'{column}' is empty")
    return text


def _shown(value: object) -> str:
    return "missing" if value is None else repr(value)
