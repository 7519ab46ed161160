"""What the prepared data looks like, in numbers the trainer logs before training starts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LengthPercentiles:
    p50: int
    p90: int
    p99: int
    max: int

    @classmethod
    def of(cls, lengths: Sequence[int]) -> LengthPercentiles:
        if not lengths:
            return cls(0, 0, 0, 0)
        p50, p90, p99 = np.percentile(np.asarray(lengths), [50, 90, 99], method="higher")
        return cls(int(p50), int(p90), int(p99), int(max(lengths)))


@dataclass(frozen=True)
class DataStats:
    """`samples` per dataset are read samples (training and validation); the rest describes
    the training split. Lengths are tokens per sample before truncation, so a p99 above
    cutoff_len says how much truncation costs."""

    stage: str
    cutoff_len: int
    samples: Mapping[str, int]
    formats: Mapping[str, str]
    train_samples: int
    eval_samples: int
    truncated: int
    dropped: int
    total_tokens: int
    trained_tokens: int
    lengths: LengthPercentiles
    rows: int
    packed: bool
    sampled: bool = False

    def summary(self) -> str:
        """One line, e.g. '312 samples (...), 14 truncated to cutoff_len=512 (4.5%), ...'.
        For a stream (`sampled`), the figures of its first samples, and it says so."""
        word = "documents" if self.stage == "pt" else "samples"
        what = "split into chunks of" if self.stage == "pt" else "truncated to"
        share = f" ({100 * self.truncated / self.train_samples:.1f}%)" if self.train_samples else ""
        sources = ", ".join(
            f"{name}: {self.formats[name]}"
            if self.sampled
            else f"{name}: {count:,} {self.formats[name]}"
            for name, count in self.samples.items()
        )
        lengths = self.lengths
        counted = (
            f"streamed, so counted on its first {self.train_samples:,} training {word} only "
            f"(the stream's length is unknown until training reads it)"
            if self.sampled
            else f"{self.train_samples:,} training {word}"
        )
        return ", ".join(
            [
                f"{counted} ({sources}; {self.eval_samples:,} for eval)",
                f"{self.truncated:,} {what} cutoff_len={self.cutoff_len}{share}",
                f"{self.dropped:,} dropped with nothing to train",
                f"{self.total_tokens:,} tokens ({self.trained_tokens:,} trained)",
                f"lengths p50 {lengths.p50:,} / p90 {lengths.p90:,} / p99 {lengths.p99:,} / "
                f"max {lengths.max:,}",
                f"{self.rows:,} {'packed rows' if self.packed else 'rows'}",
            ]
        )
