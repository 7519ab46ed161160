"""A bounded queue in front of one generation worker: admission (429) and batching.

The model is not thread-safe, and on a CPU parallel copies would only fight over the same
cores, so one worker thread runs generation. Requests that arrive while it works wait in a
queue and then run together as one batch when they share sampling settings: batching is where
the throughput comes from. A full queue refuses a request at once instead of piling requests
up until memory runs out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from tuneforge.config.schema import GenerationArgs
from tuneforge.infer.chat import ChatModel
from tuneforge.infer.decoding import Row

logger = logging.getLogger(__name__)

# How long an idle worker waits after the first request for others to join its batch: clients
# that start together arrive a few milliseconds apart, and a batch cannot be joined once begun.
BATCH_WINDOW_S = 0.05


class QueueFull(Exception):
    """Every place in the queue is taken; the caller should answer 429."""


@dataclass(eq=False)
class Job:
    """The rows of one request (one per choice) and where a failed generation is reported."""

    rows: list[Row]
    gen: GenerationArgs
    on_error: Callable[[BaseException], None]

    @property
    def abandoned(self) -> bool:
        return all(row.cancelled for row in self.rows)


class GenerationQueue:
    """Runs jobs on one worker thread, up to ``max_batch`` rows per ``generate`` call, with at
    most ``max_waiting`` jobs waiting; `submit` raises `QueueFull` beyond that."""

    def __init__(self, chat: ChatModel, *, max_batch: int, max_waiting: int) -> None:
        self.chat = chat
        self.max_batch = max_batch
        self.max_waiting = max_waiting
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []
        self._wake = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="tuneforge-generation", daemon=True)

    def start(self) -> None:
        self._worker.start()

    def close(self) -> None:
        """Stop taking jobs; the batch in progress runs to its end."""
        with self._wake:
            self._closed = True
            self._wake.notify_all()
        self._worker.join()

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def running(self) -> int:
        return len(self._running)

    def submit(
        self, rows: list[Row], gen: GenerationArgs, on_error: Callable[[BaseException], None]
    ) -> Job:
        """Queue one request's rows; thread-safe."""
        job = Job(rows, gen, on_error)
        with self._wake:
            if len(self._pending) >= self.max_waiting:
                raise QueueFull(
                    f"{self.running} requests are being answered and "
                    f"{self.waiting} are waiting; try again shortly"
                )
            self._pending.append(job)
            self._wake.notify()
        return job

    def _work(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                deadline = time.monotonic() + BATCH_WINDOW_S
                while (
                    not self._closed
                    and self._waiting_rows() < self.max_batch
                    and (left := deadline - time.monotonic()) > 0
                ):
                    self._wake.wait(left)
                if self._closed:
                    return
                self._running = self._take_batch()
            if self._running:
                self._run(self._running)
            with self._wake:
                self._running = []

    def _waiting_rows(self) -> int:
        return sum(len(job.rows) for job in self._pending)

    def _take_batch(self) -> list[Job]:
        """The oldest live job plus the later ones with the same sampling settings that fit."""
        while self._pending and self._pending[0].abandoned:
            self._pending.popleft()
        if not self._pending:
            return []
        first = self._pending.popleft()
        batch, size = [first], len(first.rows)
        for job in list(self._pending):
            if job.abandoned:
                self._pending.remove(job)
            elif job.gen == first.gen and size + len(job.rows) <= self.max_batch:
                self._pending.remove(job)
                batch.append(job)
                size += len(job.rows)
        return batch

    def _run(self, batch: list[Job]) -> None:
        try:
            self.chat.generate([row for job in batch for row in job.rows], batch[0].gen)
        except Exception as exc:  # reported to each waiting client; the server lives on
            logger.exception("generation failed for a batch of %d requests", len(batch))
            for job in batch:
                job.on_error(exc)
