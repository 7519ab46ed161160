"""Conversations -> input_ids / labels within ``cutoff_len``; text -> chunks for ``pt``.

Truncation keeps what is trained whenever it can: first the oldest exchanges go, then the
middle of the prompt (its start and the assistant header stay), and only then the end of the
response. Every truncated or dropped sample is counted, because silent truncation is how a
run trains on something other than what the user thinks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from tuneforge.data.formats import Message, map_workers
from tuneforge.data.templates import IGNORE_INDEX, Segment, Template, label_segments

ENCODED_FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int32")),
        "labels": datasets.List(datasets.Value("int32")),
        "length": datasets.Value("int32"),
        "truncated": datasets.Value("bool"),
        "tokens": datasets.Value("int32"),
        "trained": datasets.Value("int32"),
    }
)


@dataclass(frozen=True)
class EncodeReport:
    """What encoding did to one split. `lengths` are sample (document) lengths before any
    truncation; for ``pt``, `truncated` counts documents split into several chunks."""

    samples: int
    truncated: int
    dropped: int
    tokens: int
    trained_tokens: int
    lengths: tuple[int, ...]


def encode_sample(
    template: Template,
    messages: Sequence[Message],
    tools: str | None,
    *,
    cutoff_len: int,
    train_on_prompt: bool = False,
    mask_history: bool = False,
) -> tuple[list[int], list[int], int]:
    """(input_ids, labels, length before truncation) of one conversation."""
    tool_list = json.loads(tools) if tools else None
    flags = {"train_on_prompt": train_on_prompt, "mask_history": mask_history}
    segments = template.encode_segments(messages, tools=tool_list)
    ids, labels = label_segments(segments, **flags)
    full_length = len(ids)
    head = list(messages[:1]) if messages[0]["role"] == "system" else []
    turns = list(messages[len(head) :])
    while len(ids) > cutoff_len and len(turns) > 2:
        turns = turns[2:]
        segments = template.encode_segments(head + turns, tools=tool_list)
        ids, labels = label_segments(segments, **flags)
    if len(ids) > cutoff_len:
        keep = _kept_positions(template, head + turns[:-1], segments, cutoff_len)
        ids, labels = [ids[i] for i in keep], [labels[i] for i in keep]
    return ids, labels, full_length


def _kept_positions(
    template: Template, prompt_messages: list[Message], segments: list[Segment], cutoff_len: int
) -> list[int]:
    """Positions kept of an over-long single exchange: the response gets what it needs, but
    the prompt keeps at least half of cutoff_len (or all of itself if it is shorter)."""
    last = max(k for k, segment in enumerate(segments) if segment.assistant)
    prompt_len = sum(len(segment.ids) for segment in segments[:last])
    response_len = len(segments[last].ids)
    prompt_keep = min(prompt_len, max(cutoff_len - response_len, cutoff_len // 2))
    response_keep = min(response_len, cutoff_len - prompt_keep)
    header = min(header_length(template, prompt_messages), prompt_keep)
    kept = [*range(prompt_keep - header), *range(prompt_len - header, prompt_len)]
    return kept + list(range(prompt_len, prompt_len + response_keep))


def header_length(template: Template, prompt_messages: Sequence[Message]) -> int:
    """Tokens after the last prompt message's content: its end and the assistant header."""
    text = template.render(prompt_messages, add_generation_prompt=True)
    content = prompt_messages[-1]["content"]
    position = text.rfind(content)
    tail = text[position + len(content) :] if position >= 0 else ""
    return len(template.tokenizer(tail, add_special_tokens=False)["input_ids"]) if tail else 0


@dataclass(frozen=True)
class ConversationEncoder:
    """Picklable batched map function for ``sft``."""

    template: Template
    cutoff_len: int
    train_on_prompt: bool
    mask_history: bool

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in ENCODED_FEATURES}
        for messages, tools in zip(batch["messages"], batch["tools"], strict=True):
            ids, labels, length = encode_sample(
                self.template,
                messages,
                tools,
                cutoff_len=self.cutoff_len,
                train_on_prompt=self.train_on_prompt,
                mask_history=self.mask_history,
            )
            _append(out, ids, labels, length, truncated=length > len(ids))
        return out


@dataclass(frozen=True)
class TextEncoder:
    """Picklable batched map function for ``pt``: text + eos, cut into cutoff_len chunks."""

    tokenizer: Any
    cutoff_len: int

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {name: [] for name in ENCODED_FEATURES}
        texts = [text if text and text.strip() else "" for text in batch["text"]]
        eos = [self.tokenizer.eos_token_id] if self.tokenizer.eos_token_id is not None else []
        for text, ids in zip(texts, self.tokenizer(texts)["input_ids"], strict=True):
            if not text:
                _append(out, [], [], 0, truncated=False)
                continue
            ids = list(ids) + eos
            for start in range(0, len(ids), self.cutoff_len):
                chunk = ids[start : start + self.cutoff_len]
                _append(
                    out,
                    chunk,
                    chunk,
                    len(ids) if start == 0 else -1,
                    truncated=start == 0 and len(ids) > self.cutoff_len,
                )
        return out


def _append(
    out: dict[str, list[Any]], ids: list[int], labels: list[int], length: int, *, truncated: bool
) -> None:
    out["input_ids"].append(ids)
    out["labels"].append(labels)
    out["length"].append(length)
    out["truncated"].append(truncated)
    out["tokens"].append(len(ids))
    out["trained"].append(sum(1 for label in labels if label != IGNORE_INDEX))


def encode_conversations(
    rows: datasets.Dataset,
    template: Template,
    *,
    cutoff_len: int,
    train_on_prompt: bool,
    mask_history: bool,
    num_proc: int | None,
    load_from_cache_file: bool,
) -> tuple[datasets.Dataset, EncodeReport]:
    encoder = ConversationEncoder(template, cutoff_len, train_on_prompt, mask_history)
    return _encode(rows, encoder, num_proc, load_from_cache_file)


def encode_texts(
    rows: datasets.Dataset,
    tokenizer: Any,
    *,
    cutoff_len: int,
    num_proc: int | None,
    load_from_cache_file: bool,
) -> tuple[datasets.Dataset, EncodeReport]:
    return _encode(rows, TextEncoder(tokenizer, cutoff_len), num_proc, load_from_cache_file)


def _encode(
    rows: datasets.Dataset, encoder: Any, num_proc: int | None, load_from_cache_file: bool
) -> tuple[datasets.Dataset, EncodeReport]:
    encoded = rows.map(
        encoder,
        batched=True,
        remove_columns=rows.column_names,
        features=ENCODED_FEATURES,
        num_proc=map_workers(num_proc, len(rows)),
        load_from_cache_file=load_from_cache_file,
        desc="Tokenising",
    )
    lengths = [length for length in encoded["length"] if length >= 0]
    trained = list(encoded["trained"])
    kept = [i for i, count in enumerate(trained) if count > 0]
    report = EncodeReport(
        samples=len(lengths),
        truncated=sum(encoded["truncated"]),
        dropped=len(trained) - len(kept),
        tokens=sum(t for t, count in zip(encoded["tokens"], trained, strict=True) if count > 0),
        trained_tokens=sum(trained),
        lengths=tuple(lengths),
    )
    if len(kept) < len(encoded):
        encoded = encoded.select(kept)
    return encoded.select_columns(["input_ids", "labels"]), report
