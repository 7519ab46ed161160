"""Preference rows -> token ids, rendered by the same template as SFT and serving.

A prompt and its answers are cut to ``cutoff_len`` together: the prompt loses the same
middle part for every answer (its start and the assistant header stay), then the answers
lose their ends, so chosen and rejected are always judged after the same context. Every cut
is counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from tuneforge.data.encode import header_length
from tuneforge.data.formats import Message, map_workers
from tuneforge.data.templates import Template

IDS = datasets.List(datasets.Value("int32"))
PAIR_IDS = datasets.Features(
    {"prompt_ids": IDS, "chosen_ids": IDS, "rejected_ids": IDS, "truncated": datasets.Value("bool")}
)
MARKED_IDS = datasets.Features(
    {
        "prompt_ids": IDS,
        "completion_ids": IDS,
        "label": datasets.Value("bool"),
        "truncated": datasets.Value("bool"),
    }
)


@dataclass(frozen=True)
class PairReport:
    """What encoding did to one split: rows, how many were cut, and prompt+answer lengths."""

    rows: int
    truncated: int
    lengths: tuple[int, ...]


def encode_answers(
    template: Template,
    messages: Sequence[Message],
    answers: Sequence[str],
    tools: str | None,
    *,
    cutoff_len: int,
) -> tuple[list[int], list[list[int]], bool]:
    """The prompt's ids (with the assistant header), each answer's ids (through its end of
    turn), and whether they were cut to fit `cutoff_len`."""
    tool_list = json.loads(tools) if tools else None
    prompt: list[int] = []
    answer_ids = []
    for answer in answers:
        conversation = [*messages, Message(role="assistant", content=answer)]
        segments = template.encode_segments(conversation, tools=tool_list)
        last = max(k for k, segment in enumerate(segments) if segment.assistant)
        prompt = [token for segment in segments[:last] for token in segment.ids]
        answer_ids.append(list(segments[last].ids))
    longest = max(len(ids) for ids in answer_ids)
    if len(prompt) + longest <= cutoff_len:
        return prompt, answer_ids, False
    keep = min(len(prompt), max(cutoff_len - longest, cutoff_len // 2))
    header = min(header_length(template, messages), keep)
    prompt = prompt[: keep - header] + prompt[len(prompt) - header :]
    room = cutoff_len - len(prompt)
    return prompt, [ids[:room] for ids in answer_ids], True


@dataclass(frozen=True)
class PairEncoder:
    """Picklable batched map function for pairs: prompt, chosen and rejected ids."""

    template: Template
    cutoff_len: int

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in PAIR_IDS}
        for messages, tools, chosen, rejected in zip(
            batch["messages"], batch["tools"], batch["chosen"], batch["rejected"], strict=True
        ):
            prompt, (chosen_ids, rejected_ids), cut = encode_answers(
                self.template, messages, [chosen, rejected], tools, cutoff_len=self.cutoff_len
            )
            out["prompt_ids"].append(prompt)
            out["chosen_ids"].append(chosen_ids)
            out["rejected_ids"].append(rejected_ids)
            out["truncated"].append(cut)
        return out


@dataclass(frozen=True)
class MarkedEncoder:
    """Picklable batched map function for kto rows: prompt and answer ids, and the mark."""

    template: Template
    cutoff_len: int

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in MARKED_IDS}
        for messages, tools, completion, label in zip(
            batch["messages"], batch["tools"], batch["completion"], batch["label"], strict=True
        ):
            prompt, (answer,), cut = encode_answers(
                self.template, messages, [completion], tools, cutoff_len=self.cutoff_len
            )
            out["prompt_ids"].append(prompt)
            out["completion_ids"].append(answer)
            out["label"].append(label)
            out["truncated"].append(cut)
        return out


def encode_preferences(
    rows: datasets.Dataset,
    template: Template,
    *,
    cutoff_len: int,
    num_proc: int | None,
    load_from_cache_file: bool,
) -> tuple[datasets.Dataset, PairReport]:
    """Pairs (rows with chosen/rejected) or marked answers (kto rows) as ids."""
    paired = "chosen" in rows.column_names
    encoder = (PairEncoder if paired else MarkedEncoder)(template, cutoff_len)
    encoded = rows.map(
        encoder,
        batched=True,
        remove_columns=rows.column_names,
        features=PAIR_IDS if paired else MARKED_IDS,
        num_proc=map_workers(num_proc, len(rows)),
        load_from_cache_file=load_from_cache_file,
        desc="Tokenising",
    )
    answers = ("chosen_ids", "rejected_ids") if paired else ("completion_ids",)
    lengths = [
        len(prompt) + max(len(row[name]) for name in answers)
        for prompt, row in zip(
            encoded["prompt_ids"], encoded.select_columns(list(answers)), strict=True
        )
    ]
    report = PairReport(len(encoded), sum(encoded["truncated"]), tuple(lengths))
    return encoded.remove_columns("truncated"), report


def joined(rows: datasets.Dataset) -> datasets.Dataset:
    """Pairs as whole sequences (prompt + answer), the form a reward model scores."""
    return rows.map(
        lambda row: {
            "chosen_ids": row["prompt_ids"] + row["chosen_ids"],
            "rejected_ids": row["prompt_ids"] + row["rejected_ids"],
        },
        remove_columns=["prompt_ids"],
        desc="Joining prompts and answers",
    )
