"""What one reply says: its text, or the tool calls read from it, as it streams.

With tools the reply is read in the template's tool format. A stream cannot take back text it
has sent, so `ReplyReader` holds back whatever may be the start of a call (the format's call
marker, the part of it the text ends with, the whitespace before it, and the format's `lead`
such as Llama 3.1's ``<|python_tag|>``) until the reply ends; then the calls leave as calls and
anything else as text. A call that does not parse is answered as the text the model wrote,
never as half a call. The API server, the CLI chat and the WebUI all read replies with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tuneforge.data.tools import ToolCall, ToolFormat

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Answer:
    """A finished choice: its text (None when it is only calls), its calls, and why it ended."""

    content: str | None
    calls: tuple[ToolCall, ...]
    finish_reason: str


class ReplyReader:
    """One choice as it is generated: `feed` each piece and send what it returns, then
    `finish` gives the text still to send and the `Answer`.

    Without a format (no tools) every piece is sent as it comes. With one, text from the
    first call marker the format would read as a call is held back; so is a trailing part of a
    marker, the whitespace before one, and a reply that is so far the format's lead. `prefill`
    is what the prompt already wrote of the reply (the start of a call, for ``tool_choice``
    required or named)."""

    def __init__(self, fmt: ToolFormat | None = None, prefill: str = "") -> None:
        self.fmt = fmt
        self.read = fmt.parse if fmt else None
        self.marker = fmt.call_marker if fmt else ""
        self.text = prefill
        self.sent = 0
        self.holding = False

    def feed(self, piece: str) -> str:
        self.text += piece
        if self.read is None:
            self.sent = len(self.text)
            return piece
        if self.holding:
            return ""
        end = max(self.sent, len(self.text[: self._free_end()].rstrip()))
        out, self.sent = self.text[self.sent : end], end
        return out

    def finish(self, finish_reason: str, where: str = "the reply") -> tuple[str, Answer]:
        if self.read is not None and not self.holding:
            self._free_end()  # a prefill that no piece followed
        rest = self.text[self.sent :]
        if self.read is None or not self.holding:
            return rest, Answer(self.text, (), finish_reason)
        parsed = self.read(self.text)
        if parsed.calls:
            return "", Answer(parsed.content or None, parsed.calls, "tool_calls")
        if parsed.error:
            logger.warning("%s tried to call a tool, answered as text: %s", where, parsed.error)
        return rest, Answer(self.text, (), finish_reason)

    def _free_end(self) -> int:
        """Where the text that cannot be a call ends (and holding starts, when it does)."""
        lead = self.fmt.lead if self.fmt else ""
        if lead and self.sent == 0:
            body = self.text.lstrip()
            if lead.startswith(body):
                return 0  # nothing yet, or part of the lead: undecided
            if body.startswith(lead):
                rest = body[len(lead) :].lstrip()
                self.holding = not rest or rest.startswith(self.marker)
                return 0 if self.holding or not rest else len(self.text)
        at = self.text.find(self.marker, self.sent)
        while at >= 0:
            if self._is_call(at):
                self.holding = True
                return at
            at = self.text.find(self.marker, at + 1)
        for size in range(min(len(self.marker) - 1, len(self.text)), 0, -1):
            start = len(self.text) - size
            if self.text.endswith(self.marker[:size]) and self._is_call(start):
                return start
        return len(self.text)

    def _is_call(self, at: int) -> bool:
        """Whether a marker at `at` starts what the format reads as a call (hermes' tag
        anywhere; the json format's ``{`` only as the reply's first character)."""
        assert self.read is not None
        parsed = self.read(self.text[:at] + self.marker)
        return bool(parsed.calls) or parsed.error is not None
