"""What ``tuneforge data inspect`` found, and the text it prints: per dataset, then token
lengths against cutoff_len with a histogram."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from tuneforge.data.duplicates import Duplicates
from tuneforge.data.lengths import CUTOFF_STEP, TokenLengths, suggest_cutoff_len

HISTOGRAM_BINS = 12
HISTOGRAM_WIDTH = 40


@dataclass(frozen=True)
class DatasetFacts:
    """What inspect found in one dataset."""

    name: str
    samples: int
    unusable: int
    first_problem: str | None
    empty_fields: Counter[str]
    duplicates: Duplicates
    labels: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class InspectReport:
    """Everything ``tuneforge data inspect`` prints; `text` renders it."""

    stage: str
    cutoff_len: int
    template: str
    datasets: tuple[DatasetFacts, ...]
    lengths: TokenLengths
    languages: Counter[str]
    scripts: Counter[str]

    @property
    def samples(self) -> int:
        return sum(facts.samples - facts.unusable for facts in self.datasets)

    @property
    def truncated(self) -> int:
        return sum(1 for length in self.lengths.total.values if length > self.cutoff_len)

    @property
    def suggested_cutoff_len(self) -> int | None:
        """For sft and cls: the p95 suggestion; pt splits long documents, it never cuts them."""
        if self.stage == "pt" or not self.lengths.total.values:
            return None
        return suggest_cutoff_len(self.lengths.total)

    def text(self) -> str:
        """The report as printed: per dataset, then token lengths with a histogram."""
        lines = []
        for facts in self.datasets:
            lines += _dataset_lines(facts)
        lines.append(
            f"Mix of {self.samples:,} usable samples: languages "
            f"{_shares(self.languages)}; scripts {_shares(self.scripts)}"
        )
        if self.lengths.total.values:
            lines += _length_lines(self)
        return "\n".join(lines)


def _dataset_lines(facts: DatasetFacts) -> list[str]:
    lines = [f"dataset '{facts.name}': {facts.samples:,} samples"]
    if facts.empty_fields:
        fields = ", ".join(
            f"{path} in {count:,}" for path, count in facts.empty_fields.most_common()
        )
        lines.append(f"  empty or whitespace-only fields: {fields} rows")
    if facts.unusable:
        lines.append(f"  unusable rows: {facts.unusable:,} (first: {facts.first_problem})")
    dup = facts.duplicates
    if dup.normalized:
        example = f"; e.g. {dup.example[1]} repeats {dup.example[0]}" if dup.example else ""
        lines.append(
            f"  duplicates: {dup.exact:,} exact, {dup.normalized:,} ignoring case, "
            f"spaces and punctuation{example}"
        )
    else:
        lines.append("  duplicates: none")
    if facts.labels:
        most, least = facts.labels.most_common()[0][1], facts.labels.most_common()[-1][1]
        ratio = f" (largest/smallest class: {most / least:.1f}x)" if len(facts.labels) > 1 else ""
        lines.append(f"  labels: {_shares(facts.labels, counts=True)}{ratio}")
    return lines


def _length_lines(report: InspectReport) -> list[str]:
    lengths = report.lengths
    lines = [
        f"Tokens per sample ({report.template}):",
        f"  {'':<9}" + "".join(f"{name:>8}" for name in ("min", "p50", "p90", "p95", "p99", "max")),
    ]
    parts = [("prompt", lengths.prompt), ("response", lengths.response), ("total", lengths.total)]
    if lengths.response is None:
        parts = [("total", lengths.total)]
    for name, part in parts:
        if part is not None:
            lines.append(f"  {name:<9}" + "".join(f"{value:>8,}" for value in part.row()))
    lines += render_histogram(lengths.total.values, mark=report.cutoff_len)
    count = len(lengths.total.values)
    share = f" ({100 * report.truncated / count:.1f}%)" if count else ""
    verb = "splits" if report.stage == "pt" else "truncates"
    lines.append(
        f"cutoff_len={report.cutoff_len} {verb} {report.truncated:,} of {count:,} samples{share}"
    )
    suggested = report.suggested_cutoff_len
    if suggested is not None:
        lines.append(
            f"suggested cutoff_len: {suggested} (p95 = "
            f"{lengths.total.percentile(95):,} tokens, rounded up to a multiple of "
            f"{CUTOFF_STEP})"
        )
    return lines


def render_histogram(
    values: Sequence[int],
    *,
    mark: int | None = None,
    bins: int = HISTOGRAM_BINS,
    width: int = HISTOGRAM_WIDTH,
) -> list[str]:
    """Text bars of how many values fall in each equal-width range; `mark` flags its range."""
    if not values:
        return []
    low_end, high_end = min(values), max(values)
    counts, edges = np.histogram(
        np.asarray(values), bins=bins, range=(low_end, max(high_end, low_end + bins))
    )
    peak = max(int(counts.max()), 1)
    lines = []
    for count, low, high in zip(counts, edges[:-1], edges[1:], strict=True):
        bar = "█" * math.ceil(width * int(count) / peak) if count else ""
        flag = "  <- cutoff_len" if mark is not None and low <= mark < high else ""
        lines.append(f"  {int(low):>7,}-{int(high):<7,} {bar:<{width}} {int(count):,}{flag}")
    return lines


def _shares(counter: Counter[str], *, counts: bool = False) -> str:
    total = sum(counter.values()) or 1
    return ", ".join(
        f"{name} {count:,} ({100 * count / total:.0f}%)"
        if counts
        else f"{name} {100 * count / total:.0f}%"
        for name, count in counter.most_common()
    )
