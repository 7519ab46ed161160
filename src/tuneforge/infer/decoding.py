"""Per-row bookkeeping for batched generation: text as it is produced, stop strings, limits.

One `model.generate` call runs a whole batch of rows (requests, or the ``n`` choices of one
request) until every row is done, but each row has its own token limit, its own stop strings
and a client that may hang up. `RowTracker` is the stopping criterion that follows every row:
after each step it turns the row's new token into text, hands the text that is final to the
row's callback and tells ``generate`` which rows are finished.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from transformers import StoppingCriteria

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(eq=False)
class Row:
    """One sequence to generate: its prompt, its limits and, as generation goes, its text.

    ``on_text`` receives each piece of text once it is final (never a piece that a stop string
    could still cut off); ``on_finish`` is called once, when the row is done. Setting
    ``cancelled`` from another thread ends the row at the next step.
    """

    prompt_ids: list[int]
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    on_text: Callable[[str], None] | None = None
    on_finish: Callable[[Row], None] | None = None
    cancelled: bool = False
    text: str = ""
    completion_tokens: int = 0
    finish_reason: FinishReason | None = None
    token_ids: list[int] = field(default_factory=list, repr=False)


class RowTracker(StoppingCriteria):
    """Follows every row of one batch; a row is done at a stop token, a stop string, its own
    token limit or a cancellation, and ``generate`` stops when all are."""

    def __init__(self, rows: Sequence[Row], tokenizer: Any, stop_ids: Sequence[int]) -> None:
        self.rows = list(rows)
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(stop_ids)

    def __call__(
        self, input_ids: torch.LongTensor, scores: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        for row, token in zip(self.rows, input_ids[:, -1].tolist(), strict=True):
            if row.finish_reason is None:
                self._advance(row, token)
        return torch.tensor(
            [row.finish_reason is not None for row in self.rows],
            dtype=torch.bool,
            device=input_ids.device,
        )

    def finish_all(self) -> None:
        """End the rows ``generate`` left unfinished (it stopped at the batch's token limit)."""
        for row in self.rows:
            if row.finish_reason is None:
                self._finish(row, "length", self._decode(row))

    def _advance(self, row: Row, token: int) -> None:
        if row.cancelled:
            row.finish_reason = "cancelled"
            return
        row.completion_tokens += 1
        if token in self.stop_ids:
            self._finish(row, "stop", self._decode(row))
            return
        row.token_ids.append(token)
        text = self._decode(row)
        cut = _first_stop(text, row.stop, start=max(0, len(row.text) - _longest(row.stop)))
        if cut is not None:
            self._finish(row, "stop", text[:cut])
        elif row.completion_tokens >= row.max_new_tokens:
            self._finish(row, "length", text)
        else:
            self._emit(row, text[: _final_length(text, row.stop)])

    def _decode(self, row: Row) -> str:
        return self.tokenizer.decode(row.token_ids, skip_special_tokens=True)

    def _emit(self, row: Row, text: str) -> None:
        if len(text) > len(row.text):
            piece, row.text = text[len(row.text) :], text
            if row.on_text is not None:
                row.on_text(piece)

    def _finish(self, row: Row, reason: FinishReason, text: str) -> None:
        self._emit(row, text)
        row.finish_reason = reason
        if row.on_finish is not None:
            row.on_finish(row)


def _longest(stop: Sequence[str]) -> int:
    return max((len(word) for word in stop), default=0)


def _first_stop(text: str, stop: Sequence[str], start: int) -> int | None:
    """Where the earliest stop string in ``text[start:]`` begins, or None."""
    found = [at for word in stop if (at := text.find(word, start)) >= 0]
    return min(found) if found else None


def _final_length(text: str, stop: Sequence[str]) -> int:
    """How much of ``text`` can be sent: not the start of a stop string that the next tokens
    may complete, and not a half-decoded character (shown as U+FFFD until its bytes arrive)."""
    end = len(text.rstrip("\ufffd"))
    held = [
        size
        for word in stop
        for size in range(1, min(len(word) - 1, end) + 1)
        if text.endswith(word[:size], 0, end)
    ]
    return end - max(held, default=0)
