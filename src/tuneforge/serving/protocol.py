"""The OpenAI chat-completions wire format: validated requests, responses, stream chunks, errors.

Requests are validated strictly (no "5" for a number, no unknown fields), so a client's typo
is answered with a 400 naming the field instead of being silently ignored.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tuneforge.data import Message
from tuneforge.data.formats import append_message
from tuneforge.data.tools import ToolCall, ToolError, calls_json, new_call_id, read_calls
from tuneforge.infer.decoding import Row
from tuneforge.infer.replies import Answer

MAX_STOP_WORDS = 4
MAX_CHOICES = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class RequestError(ValueError):
    """A request that validates field by field but not as a whole; `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


class FunctionCall(_Strict):
    name: str
    arguments: str


class ToolCallItem(_Strict):
    """A call of an earlier assistant message, as the client sends it back."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallItem] | None = None
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        if self.content is None or isinstance(self.content, str):
            return self.content or ""
        return "".join(part.text for part in self.content)


class FunctionSchema(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolSchema(_Strict):
    type: Literal["function"]
    function: FunctionSchema


class FunctionName(_Strict):
    name: str


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionRequest(_Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    tools: list[ToolSchema] | None = Field(None, min_length=1)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @field_validator("stop")
    @classmethod
    def _stop_words(cls, value: str | list[str] | None) -> str | list[str] | None:
        words = [value] if isinstance(value, str) else value or []
        if len(words) > MAX_STOP_WORDS or any(not word for word in words):
            raise ValueError(f"give at most {MAX_STOP_WORDS} non-empty stop strings")
        return value

    @property
    def stop_words(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    @property
    def requested_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return [tool.model_dump(exclude_none=True) for tool in self.tools or ()]

    @property
    def active_tools(self) -> list[dict[str, Any]]:
        """The tools the model sees: none with ``tool_choice: none``."""
        return [] if self.tool_choice == "none" else self.tool_schemas

    @property
    def forced_call(self) -> str | None:
        """What the reply must call: ``required`` (some tool), a function's name, or None."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return "required" if self.tool_choice == "required" else None

    def check_tools(self) -> None:
        """What the field checks cannot see: tool names once each, a tool choice that the
        tools allow. Raises `RequestError`."""
        names = [tool.function.name for tool in self.tools or ()]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise RequestError(f"tools: the function {twice[0]!r} is listed twice", "tools")
        forced = self.forced_call
        if forced is not None and not names:
            raise RequestError(
                f"tool_choice {forced!r} needs tools; none were given", "tool_choice"
            )
        if forced not in (None, "required") and forced not in names:
            raise RequestError(
                f"tool_choice names the function {forced!r}, which is not in tools "
                f"({', '.join(names)})",
                "tool_choice",
            )

    def conversation(self) -> list[Message]:
        """The messages as training wrote them: an assistant's ``tool_calls`` become a
        ``function`` message of the calls, ``tool`` results an ``observation`` (consecutive
        ones merged). Raises `RequestError` naming the message."""
        messages: list[Message] = []
        call_ids: set[str] = set()
        for i, message in enumerate(self.messages):
            where = f"messages.{i}"
            if message.role == "tool":
                _add_result(messages, message, where, call_ids)
                continue
            if message.role == "assistant" and message.tool_calls:
                call_ids = {call.id for call in message.tool_calls}
                if message.text.strip():  # text before the calls, as the server returns it
                    messages.append({"role": "assistant", "content": message.text})
                messages.append({"role": "function", "content": _calls(message, where)})
                continue
            if message.content is None:
                raise RequestError(f"{where}.content is missing", f"{where}.content")
            messages.append({"role": message.role, "content": message.text})
        return messages


def _calls(message: ChatMessage, where: str) -> str:
    items = [call.function.model_dump() for call in message.tool_calls or ()]
    try:
        return calls_json(read_calls(items, None, check_names=False))
    except ToolError as err:
        raise RequestError(f"{where}.tool_calls{err}", f"{where}.tool_calls") from None


def _add_result(
    messages: list[Message], message: ChatMessage, where: str, call_ids: set[str]
) -> None:
    if message.tool_call_id is None:
        raise RequestError(f"{where}.tool_call_id is missing", f"{where}.tool_call_id")
    if not append_message(messages, {"role": "observation", "content": message.text}):
        raise RequestError(
            f"{where} is a tool result with no assistant tool_calls before it", where
        )
    if message.tool_call_id not in call_ids:
        raise RequestError(
            f"{where}.tool_call_id {message.tool_call_id!r} is not the id of a call in the "
            f"assistant message before it",
            f"{where}.tool_call_id",
        )


def error_body(
    message: str,
    *,
    kind: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """OpenAI's error object, which the official clients turn into their exceptions."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage(prompt_tokens: int, rows: Sequence[Row]) -> dict[str, int]:
    completion = sum(row.completion_tokens for row in rows)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def completion(
    cid: str, model: str, prompt_tokens: int, rows: Sequence[Row], answers: Sequence[Answer]
) -> dict[str, Any]:
    """The non-streaming response: one choice per row."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": answer.content}
                | ({"tool_calls": tool_calls(answer.calls)} if answer.calls else {}),
                "finish_reason": answer.finish_reason,
                "logprobs": None,
            }
            for index, answer in enumerate(answers)
        ],
        "usage": usage(prompt_tokens, rows),
    }


def tool_calls(calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """Calls as OpenAI writes them: each with a new id, its arguments as JSON text."""
    return [
        {
            "id": new_call_id(),
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments_json()},
        }
        for call in calls
    ]


def call_deltas(index: int, calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    """A streamed choice's calls, one delta each, whole (the name and all the arguments in
    one piece), with the ``index`` by which clients put streamed calls together."""
    return [
        delta(index, {"tool_calls": [{"index": k, **call}]})
        for k, call in enumerate(tool_calls(calls))
    ]


def chunk(
    cid: str, model: str, choices: list[dict[str, Any]], usage_counts: dict[str, int] | None = None
) -> str:
    """One server-sent event of a streamed completion."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }
    if usage_counts is not None:
        body["usage"] = usage_counts
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


def delta(index: int, content: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": content, "finish_reason": finish_reason, "logprobs": None}


STREAM_END = "data: [DONE]\n\n"
