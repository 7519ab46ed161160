"""Helpers of the serve tests: a slow fake model, and waiting for something to happen."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch

from tuneforge.config import GenerationArgs
from tuneforge.infer import Row
from tuneforge.infer.decoding import RowTracker

STEP_S = 0.01  # one token of the slow fake model


class _Letters:
    """A tokenizer for the fake model: every token is the letter 'a'."""

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return "a" * len(ids)


@dataclass(eq=False)
class SlowChat:
    """Stands in for `ChatModel`: one token every STEP_S through the real `RowTracker`, so rows
    end (length, cancellation) as in ``model.generate``; keeps every batch it was given."""

    model: Any = field(default_factory=lambda: SimpleNamespace(config=SimpleNamespace()))
    batches: list[list[Row]] = field(default_factory=list)

    def encode(
        self, messages: Sequence[dict[str, str]], tools: Any = None, prefill: str = ""
    ) -> list[int]:
        return [1, 2, 3]

    def generate(self, rows: Sequence[Row], gen: GenerationArgs) -> None:
        self.batches.append(list(rows))
        tracker = RowTracker(rows, _Letters(), stop_ids=())
        for _ in range(max(row.max_new_tokens for row in rows)):
            time.sleep(STEP_S)
            if all(tracker(torch.ones(len(rows), 1, dtype=torch.long)).tolist()):
                return
        tracker.finish_all()

    def stop_all(self) -> None:
        for batch in self.batches:
            for row in batch:
                row.cancelled = True


def eventually(check: Callable[[], bool], timeout: float = 10) -> bool:
    """Whether `check` becomes true within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True
