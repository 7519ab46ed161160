"""Alpaca, ShareGPT and OpenAI rows -> one `Conversation` type; plain text rows for ``pt``.

Everything after this module sees one shape: a list of ``{role, content}`` messages with
roles system / user / assistant / observation / function. Every row is validated on the way,
and a problem names the file, the 1-based row and the field path, because "KeyError:
'instruction'" from deep inside tokenisation is the most common way a run fails.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypedDict

import datasets

from tuneforge.data.registry import DatasetSpec
from tuneforge.data.tools import ToolError, calls_json, check_tools, read_calls
from tuneforge.errors import DataError

logger = logging.getLogger(__name__)

Role = Literal["system", "user", "assistant", "observation", "function"]


class Message(TypedDict):
    role: Role
    content: str


class Conversation(TypedDict):
    """One training sample; ``tools`` is a JSON list of tool schemas, or None."""

    messages: list[Message]
    tools: str | None


CONVERSATION_FEATURES = datasets.Features(
    {
        "messages": datasets.List(
            {"role": datasets.Value("string"), "content": datasets.Value("string")}
        ),
        "tools": datasets.Value("string"),
    }
)
TEXT_FEATURES = datasets.Features({"text": datasets.Value("string")})
MAX_REPORTED_ROWS = 10

DEFAULT_COLUMNS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "alpaca": MappingProxyType(
            {
                "prompt": "instruction",
                "query": "input",
                "response": "output",
                "history": "history",
                "system": "system",
                "tools": "tools",
            }
        ),
        "sharegpt": MappingProxyType(
            {"messages": "conversations", "system": "system", "tools": "tools"}
        ),
        "openai": MappingProxyType({"messages": "messages", "system": "system", "tools": "tools"}),
        "text": MappingProxyType({"prompt": "text"}),
    }
)
REQUIRED_COLUMNS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "alpaca": ("prompt", "response"),
        "sharegpt": ("messages",),
        "openai": ("messages",),
        "text": ("prompt",),
    }
)
DEFAULT_TAGS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "sharegpt": MappingProxyType(
            {
                "role_tag": "from",
                "content_tag": "value",
                "user_tag": "human",
                "assistant_tag": "gpt",
                "observation_tag": "observation",
                "function_tag": "function_call",
                "system_tag": "system",
            }
        ),
        "openai": MappingProxyType(
            {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
                "observation_tag": "tool",
                "function_tag": "function_call",
                "system_tag": "system",
            }
        ),
    }
)


@dataclass(frozen=True)
class RowFormat:
    """How to read one dataset's rows: the format, its column names and message tags."""

    name: str
    columns: Mapping[str, str]
    tags: Mapping[str, str] = field(default_factory=dict)
    detected: bool = False

    def describe(self) -> str:
        """e.g. ``sharegpt (from/value, human/gpt; detected)``."""
        notes = []
        if self.tags:
            t = self.tags
            notes.append(
                f"{t['role_tag']}/{t['content_tag']}, {t['user_tag']}/{t['assistant_tag']}"
            )
        if self.detected:
            notes.append("detected")
        return f"{self.name} ({'; '.join(notes)})" if notes else self.name


class _RowProblem(Exception):
    """A problem with one row; collected with the others, then raised as one DataError."""


def resolve_format(
    spec: DatasetSpec, where: str, rows: datasets.Dataset, stage: str, answered: bool = True
) -> RowFormat:
    """The format declared in the registry, else detected from the first row; columns checked
    (without `answered`, a test set may lack the answer column)."""
    if stage == "pt":
        fmt = RowFormat("text", {"prompt": spec.columns.get("prompt", "text")})
    elif spec.formatting is not None:
        fmt = _declared(spec)
    else:
        fmt = _detect(spec, where, rows)
        logger.info("dataset '%s': read %s as %s", spec.name, where, fmt.describe())
    _check_columns(spec, where, rows.column_names, fmt, stage, answered)
    return fmt


def _declared(spec: DatasetSpec) -> RowFormat:
    name = str(spec.formatting)
    columns = {**DEFAULT_COLUMNS[name], **spec.columns}
    tags = {**DEFAULT_TAGS[name], **spec.tags} if name in DEFAULT_TAGS else {}
    return RowFormat(name, MappingProxyType(columns), MappingProxyType(tags))


def _detect(spec: DatasetSpec, where: str, rows: datasets.Dataset) -> RowFormat:
    names = rows.column_names
    first = rows[0] if len(rows) else {}
    for style, default in (("sharegpt", "conversations"), ("openai", "messages")):
        column = spec.columns.get("messages", default)
        if column in names and isinstance(first.get(column), list):
            tags = _detect_tags(spec, where, column, first[column], style)
            name = "openai" if tags == dict(DEFAULT_TAGS["openai"]) else "sharegpt"
            columns = {**DEFAULT_COLUMNS[name], **spec.columns, "messages": column}
            return RowFormat(name, MappingProxyType(columns), MappingProxyType(tags), True)
    alpaca = {**DEFAULT_COLUMNS["alpaca"], **spec.columns}
    if alpaca["prompt"] in names or alpaca["response"] in names:
        # The other one may be missing: `_check_columns` names it.
        return RowFormat("alpaca", MappingProxyType(alpaca), detected=True)
    raise DataError(
        f"{where}: cannot tell the format from the columns ({', '.join(names)}); "
        f"set formatting in dataset_info.json for dataset '{spec.name}' (alpaca: "
        f"instruction/input/output, sharegpt: conversations, openai: messages)"
    )


def _detect_tags(
    spec: DatasetSpec, where: str, column: str, messages: list[Any], style: str
) -> dict[str, str]:
    """Tags from the first row's message keys and role names; registry tags win."""
    keys = set(messages[0]) if messages and isinstance(messages[0], dict) else set()
    tags = dict(DEFAULT_TAGS["openai" if {"role", "content"} <= keys else style])
    if {"from", "value"} <= keys:
        tags.update(role_tag="from", content_tag="value")
    roles = {m.get(tags["role_tag"]) for m in messages if isinstance(m, dict)}
    for theirs in (DEFAULT_TAGS["sharegpt"], DEFAULT_TAGS["openai"]):
        if roles & {theirs["user_tag"], theirs["assistant_tag"]}:
            tags.update({k: theirs[k] for k in ("user_tag", "assistant_tag", "observation_tag")})
            break
    tags.update(spec.tags)
    if not {tags["role_tag"], tags["content_tag"]} <= keys:
        raise DataError(
            f"{where}: row 1: cannot tell the message keys of '{column}' (it has "
            f"{', '.join(sorted(map(str, keys))) or 'none'}); set tags.role_tag "
            f"and tags.content_tag for dataset '{spec.name}' in dataset_info.json"
        )
    return tags


def _check_columns(
    spec: DatasetSpec,
    where: str,
    names: Sequence[str],
    fmt: RowFormat,
    stage: str,
    answered: bool = True,
) -> None:
    if stage != "pt":
        for key in spec.columns:
            if key not in DEFAULT_COLUMNS[fmt.name]:
                raise DataError(
                    f"dataset '{spec.name}': columns.{key} does not apply to "
                    f"{fmt.name} data (it uses "
                    f"{', '.join(DEFAULT_COLUMNS[fmt.name])})"
                )
    if stage != "pt" and spec.tags and not fmt.tags:
        raise DataError(f"dataset '{spec.name}': tags apply to sharegpt and openai data only")
    keys = [k for k in fmt.columns if k in spec.columns or k in REQUIRED_COLUMNS[fmt.name]]
    if not answered:
        keys = [k for k in keys if k != "response"]
    for key in keys:
        column = fmt.columns[key]
        if column not in names:
            how = "" if key in spec.columns else f"; set columns.{key} in dataset_info.json"
            role = (
                "the text column of stage pt"
                if fmt.name == "text"
                else f"the {fmt.name} {key} column"
            )
            raise DataError(
                f"{where}: no column '{column}' ({role}); the file has: {', '.join(names)}{how}"
            )


def to_conversations(
    rows: datasets.Dataset,
    where: str,
    fmt: RowFormat,
    *,
    num_proc: int | None,
    load_from_cache_file: bool,
    answered: bool = True,
) -> datasets.Dataset:
    """Convert and validate every row; raise one DataError listing the first bad rows.

    ``answered=False`` (test sets) also accepts rows without a final answer: their
    conversation ends with the user turn.
    """
    features = TEXT_FEATURES if fmt.name == "text" else CONVERSATION_FEATURES
    features = datasets.Features({**features, "error": datasets.Value("string")})
    converted = rows.map(
        RowConverter(fmt, where, answered),
        with_indices=True,
        remove_columns=rows.column_names,
        features=features,
        num_proc=map_workers(num_proc, len(rows)),
        load_from_cache_file=load_from_cache_file,
        desc=f"Reading {where}",
    )
    errors = [error for error in converted["error"] if error]
    if errors:
        more = len(errors) - MAX_REPORTED_ROWS
        raise DataError(
            *errors[:MAX_REPORTED_ROWS],
            f"... and {more} more rows with problems" if more > 0 else "",
        )
    return converted.remove_columns("error")


def map_workers(num_proc: int | None, rows: int) -> int | None:
    """``num_proc`` for `datasets.map`, never more processes than rows (datasets warns)."""
    return min(num_proc, rows) if num_proc and rows > 1 else None


@dataclass(frozen=True)
class RowConverter:
    """Picklable row function for `datasets.map` (one per file, so messages can name it)."""

    fmt: RowFormat
    where: str
    answered: bool = True

    def __call__(self, row: dict[str, Any], index: int) -> dict[str, Any]:
        empty: dict[str, Any] = (
            {"text": None} if self.fmt.name == "text" else {"messages": [], "tools": None}
        )
        try:
            converted = (
                {"text": _text_row(row, self.fmt)}
                if self.fmt.name == "text"
                else (
                    _alpaca_row(row, self.fmt, self.answered)
                    if self.fmt.name == "alpaca"
                    else _chat_row(row, self.fmt, self.answered)
                )
            )
        except _RowProblem as problem:
            return {**empty, "error": f"{self.where}: row {index + 1}: {problem}"}
        return {**converted, "error": None}


def _text_row(row: Mapping[str, Any], fmt: RowFormat) -> str:
    column = fmt.columns["prompt"]
    text = _text(row.get(column), f"'{column}'")
    if text is None:
        raise _RowProblem(f"missing '{column}'")
    return text


def _alpaca_row(row: Mapping[str, Any], fmt: RowFormat, answered: bool = True) -> Conversation:
    col = fmt.columns
    instruction = _text(row.get(col["prompt"]), f"'{col['prompt']}'")
    query = _text(row.get(col["query"]), f"'{col['query']}'") or ""
    response = _text(row.get(col["response"]), f"'{col['response']}'")
    if instruction is None:
        raise _RowProblem(f"missing '{col['prompt']}'")
    prompt = "\n".join(part for part in (instruction, query) if part)
    if not prompt.strip():
        raise _RowProblem(f"empty prompt ('{col['prompt']}' and '{col['query']}' are empty)")
    if response is None and answered:
        raise _RowProblem(f"missing '{col['response']}'")
    if response is not None and not response.strip() and answered:
        raise _RowProblem(f"'{col['response']}' is empty")
    messages: list[Message] = _system(row.get(col["system"]), col["system"])
    for pair in _history(row.get(col["history"]), col["history"]):
        messages += [
            Message(role="user", content=pair[0]),
            Message(role="assistant", content=pair[1]),
        ]
    messages.append(Message(role="user", content=prompt))
    if response and response.strip():
        messages.append(Message(role="assistant", content=response))
    return Conversation(messages=messages, tools=_tools(row.get(col["tools"]), col["tools"]))


def _history(value: object, column: str) -> list[tuple[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _RowProblem(
            f"'{column}' is {_kind(value)}, expected a list of [question, answer] pairs"
        )
    pairs = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise _RowProblem(f"{column}[{i}] is not a [question, answer] pair")
        texts = [_text(part, f"{column}[{i}][{j}]") for j, part in enumerate(pair)]
        for j, text in enumerate(texts):
            if not text or not text.strip():
                raise _RowProblem(f"{column}[{i}][{j}] is empty")
        pairs.append((str(texts[0]), str(texts[1])))
    return pairs


def _chat_row(row: Mapping[str, Any], fmt: RowFormat, answered: bool = True) -> Conversation:
    column, tags = fmt.columns["messages"], fmt.tags
    raw = row.get(column)
    if raw is None:
        raise _RowProblem(f"missing '{column}'")
    if not isinstance(raw, list):
        raise _RowProblem(f"'{column}' is {_kind(raw)}, expected a list of messages")
    roles: dict[str, Role] = {
        tags["user_tag"]: "user",
        tags["assistant_tag"]: "assistant",
        tags["observation_tag"]: "observation",
        tags["function_tag"]: "function",
        tags["system_tag"]: "system",
    }
    tools = _tools(row.get(fmt.columns["tools"]), fmt.columns["tools"])
    schemas = json.loads(tools) if tools else None
    messages: list[Message] = []
    positions: list[int] = []  # the raw index of each message (tool results merge)
    for i, item in enumerate(raw):
        message = _chat_message(item, f"{column}[{i}]", roles, tags, first=i == 0)
        if message and message[0]["role"] == "function":
            message = [_function_message(message[0], f"{column}[{i}]", schemas)]
        for one in message:
            before = len(messages)
            if not append_message(messages, one):
                raise _RowProblem(
                    f"{column}[{i}] is a tool result ('{item[tags['role_tag']]}') with no "
                    f"function call before it"
                )
            positions += [i] * (len(messages) - before)
    system = _system(row.get(fmt.columns["system"]), fmt.columns["system"])
    if system and messages and messages[0]["role"] == "system":
        raise _RowProblem(f"has both a '{fmt.columns['system']}' column and a system message")
    _check_order(raw, messages, positions, column, tags, answered)
    return Conversation(messages=system + messages, tools=tools)


def append_message(messages: list[Message], message: Message) -> bool:
    """Add `message` to a conversation. OpenAI writes one ``tool`` message per call, the
    templates one observation turn after the calls: a tool result right after another merges
    into it (joined by a newline). False, and nothing added, for a tool result with no
    function call before it. Data rows and API requests both build conversations with this."""
    last = messages[-1]["role"] if messages else None
    if message["role"] == "observation":
        if last not in ("function", "observation"):
            return False
        if last == "observation":
            merged = messages[-1]["content"] + "\n" + message["content"]
            messages[-1] = Message(role="observation", content=merged)
            return True
    messages.append(message)
    return True


def _function_message(message: Message, path: str, tools: list[dict[str, Any]] | None) -> Message:
    """A call turn with its calls checked against the row's tools, in canonical JSON."""
    try:
        calls = read_calls(message["content"], tools)
    except ToolError as err:
        raise _RowProblem(f"{path}: the function call {err}") from None
    return Message(role="function", content=calls_json(calls))


def _chat_message(
    item: object, path: str, roles: Mapping[str, Role], tags: Mapping[str, str], *, first: bool
) -> list[Message]:
    if not isinstance(item, dict):
        raise _RowProblem(f"{path} is {_kind(item)}, expected an object")
    role_tag, content_tag = tags["role_tag"], tags["content_tag"]
    tag = item.get(role_tag)
    if tag is None:
        raise _RowProblem(f"{path}.{role_tag} is missing")
    if tag not in roles:
        raise _RowProblem(
            f"{path}.{role_tag} is '{tag}'; expected one of {', '.join(repr(r) for r in roles)}"
        )
    role = roles[tag]
    if item.get("tool_calls") is not None and role == "assistant":  # OpenAI's form of a call
        if (item.get(content_tag) or "").strip():
            raise _RowProblem(
                f"{path} has both text and tool_calls; tuneforge trains a call turn as calls "
                f"alone: move the text to its own assistant message"
            )
        if not isinstance(item["tool_calls"], list):
            raise _RowProblem(f"{path}.tool_calls is {_kind(item['tool_calls'])}, expected a list")
        return [Message(role="function", content=json.dumps(item["tool_calls"]))]
    content = _text(item.get(content_tag), f"{path}.{content_tag}")
    if content is None:
        raise _RowProblem(f"{path}.{content_tag} is missing")
    if role == "system":
        if not first:
            raise _RowProblem(f"{path}.{role_tag} is '{tag}'; a system message can only come first")
        return [Message(role="system", content=content)] if content.strip() else []
    if not content.strip():
        raise _RowProblem(f"{path}.{content_tag} is empty")
    return [Message(role=role, content=content)]


def _check_order(
    raw: list[Any],
    messages: list[Message],
    positions: list[int],
    column: str,
    tags: Mapping[str, str],
    answered: bool = True,
) -> None:
    """Optional system, then user/observation and assistant/function alternating, ending
    with the assistant (or, unless `answered`, with the user)."""
    turns = [(m, at) for m, at in zip(messages, positions, strict=True) if m["role"] != "system"]
    for k, (message, at) in enumerate(turns):
        want_user = k % 2 == 0
        if (message["role"] in ("user", "observation")) != want_user:
            expected = tags["user_tag"] if want_user else tags["assistant_tag"]
            raise _RowProblem(
                f"{column}[{at}].{tags['role_tag']} is "
                f"'{raw[at][tags['role_tag']]}' where '{expected}' was "
                f"expected"
            )
    if not turns:
        raise _RowProblem(f"'{column}' has no {tags['user_tag']} message")
    if len(turns) % 2 and answered:
        raise _RowProblem(
            f"'{column}' ends with a '{raw[-1][tags['role_tag']]}' message; "
            f"the last message must be from '{tags['assistant_tag']}'"
        )


def _system(value: object, column: str) -> list[Message]:
    text = _text(value, f"'{column}'")
    return [Message(role="system", content=text)] if text and text.strip() else []


def _tools(value: object, column: str) -> str | None:
    if value is None or value == "" or value == []:
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise _RowProblem(f"'{column}' is not valid JSON ({err.msg})") from None
    if isinstance(value, dict):
        value = [value]
    try:
        return json.dumps(check_tools(value), ensure_ascii=False)
    except ToolError as err:
        raise _RowProblem(f"'{column}'{err}") from None  # " must be ..." or "[i] is ..."


def _text(value: object, label: str) -> str | None:
    """Text, None when absent; whole numbers (common in CSV answers) become text."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _RowProblem(f"{label} is {_kind(value)}, expected text")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__
