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
from tuneforge.infer.decoding import Row

MAX_STOP_WORDS = 4
MAX_CHOICES = 16


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ChatMessage(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]
    name: str | None = None

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


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

    def conversation(self) -> list[Message]:
        return [{"role": message.role, "content": message.text} for message in self.messages]


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


def completion(cid: str, model: str, prompt_tokens: int, rows: Sequence[Row]) -> dict[str, Any]:
    """The non-streaming response: one choice per row."""
    return {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": index,
                "message": {"role": "assistant", "content": row.text},
                "finish_reason": row.finish_reason,
                "logprobs": None,
            }
            for index, row in enumerate(rows)
        ],
        "usage": usage(prompt_tokens, rows),
    }


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


def delta(index: int, content: dict[str, str], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": index, "delta": content, "finish_reason": finish_reason, "logprobs": None}


STREAM_END = "data: [DONE]\n\n"
