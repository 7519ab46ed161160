"""Chatting with tools, for the CLI's ``chat --tools`` and the WebUI's Chat tab.

A reply is shown as it is generated, but a reply that turns out to be a call should be shown
as a call, not as the raw ``<tool_call>`` text the model writes. `ReplyStream` therefore holds
back any text that may be the start of a call until it is clear, and reads the whole reply in
the template's tool format at the end. The user answers each call with the tool's result (an
``observation`` message) and the model continues; both front-ends build the conversation
with the same functions here, so what they send the model is what training rendered.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tuneforge.config.schema import GenerationArgs
from tuneforge.data import Message
from tuneforge.data.tools import (
    ParsedReply,
    ToolCall,
    ToolError,
    calls_json,
    calls_of,
    check_tools,
)
from tuneforge.errors import DataError
from tuneforge.infer.chat import ChatModel
from tuneforge.infer.replies import ReplyReader
from tuneforge.userfiles import kind_of, read_utf8


def read_tools_file(path: str | Path) -> list[dict[str, Any]]:
    """The tool schemas in a JSON file (a list, each bare or in OpenAI's wrapped form), or a
    `DataError` of one line naming the file and what is wrong."""
    path = Path(path)
    kind = kind_of(path)
    if kind != "file":
        raise DataError(f"{path}: {'is a folder, not a file' if kind else 'no such file'}")
    return parse_tools(read_utf8(path, DataError), str(path))


def read_tools(value: str) -> list[dict[str, Any]] | None:
    """Tools from what a form field holds: a JSON list pasted in, or the path of a file of one;
    None when it is empty."""
    value = value.strip()
    if not value:
        return None
    return parse_tools(value, "pasted tools") if value.startswith("[") else read_tools_file(value)


def parse_tools(text: str, origin: str) -> list[dict[str, Any]]:
    """Tool schemas from a JSON text (see `read_tools_file`); errors begin with `origin`."""
    try:
        tools = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{origin}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno})"
        ) from None
    try:
        return check_tools(tools)
    except ToolError as err:
        raise DataError(f"{origin}: tools{err}") from None


def call_text(call: ToolCall) -> str:
    """A call as people read one: ``get_weather({"city": "Paris"})``."""
    return f"{call.name}({call.arguments_json()})"


def observation(result: str) -> Message:
    """The message that gives the model a tool's result."""
    return {"role": "observation", "content": result}


def pending_calls(messages: Sequence[Message]) -> list[ToolCall]:
    """The calls of the conversation's last call turn that have no result after it yet, in
    order (a result answers the first call still open)."""
    for back, message in enumerate(reversed(messages)):
        if message["role"] == "function":
            return calls_of(message["content"])[back:]  # each message after it is a result
        if message["role"] != "observation":
            return []
    return []


class ReplyStream:
    """One reply, streamed for display; iterate for the text to show as it comes.

    Without tools every piece is shown. With tools, text that may start a call (the format's
    call marker, or part of it) is held back; once the stream ends, `reply` reads the whole
    text, `unshown` is what is still to show when it is not a call, and `messages` is what
    the conversation gains (a ``function`` message of the calls, or the assistant's text).
    A reply interrupted part-way is read the same way, from the text it has.
    """

    def __init__(
        self,
        model: ChatModel,
        messages: Sequence[Message],
        gen: GenerationArgs | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.model = model
        self.messages_in = list(messages)
        self.gen = gen
        self.tools = list(tools or ())
        self.reader = ReplyReader(model.template.tool_format if self.tools else None)

    @property
    def text(self) -> str:
        return self.reader.text

    @property
    def shown(self) -> int:
        """How much of `text` has been yielded for display."""
        return self.reader.sent

    def __iter__(self) -> Iterator[str]:
        for piece in self.model.stream(self.messages_in, self.gen, tools=self.tools or None):
            shown = self.reader.feed(piece)
            if shown:
                yield shown

    @property
    def reply(self) -> ParsedReply:
        if not self.tools:
            return ParsedReply(self.text.strip())
        return self.model.read_reply(self.text)

    @property
    def unshown(self) -> str:
        """The text not shown yet, to show when the reply is not a call."""
        return "" if self.reply.calls else self.text[self.shown :]

    @property
    def messages(self) -> list[Message]:
        """What the conversation gains from this reply."""
        calls = self.reply.calls
        if calls:
            return [{"role": "function", "content": calls_json(calls)}]
        return [{"role": "assistant", "content": self.text.strip()}]
