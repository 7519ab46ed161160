"""Duplicate samples: exactly equal, or equal once case, spaces and punctuation are ignored.

A repeated sample is trained on twice and can leak into the validation split, so inspect
counts them and clean drops them; both compare samples by `sample_key`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tuneforge.data.samples import Sample


def normalize(text: str) -> str:
    """Case, whitespace and punctuation removed: what makes two samples the same one."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


def sample_key(sample: Sample, *, normalized: bool) -> str:
    """The identity of a sample for deduplication: its roles, contents, tools and label."""
    fix = normalize if normalized else (lambda text: text)
    if sample.text is not None:
        body: Any = fix(sample.text)
    else:
        body = [[message["role"], fix(message["content"])] for message in sample.messages]
    return json.dumps([body, sample.tools, sample.label], ensure_ascii=False)


@dataclass(frozen=True)
class Duplicates:
    """Samples equal to an earlier one: exactly, and after `normalize`."""

    exact: int
    normalized: int
    example: tuple[str, str] | None


def find_duplicates(samples: Sequence[Sample]) -> dict[str, Duplicates]:
    """Per dataset, the samples that repeat an earlier usable sample (of any dataset)."""
    seen: dict[bool, dict[str, Sample]] = {False: {}, True: {}}
    counts: dict[str, Counter[bool]] = {}
    examples: dict[str, tuple[str, str]] = {}
    for sample in samples:
        counts.setdefault(sample.dataset, Counter())
        if sample.problem:
            continue
        for normalized in (False, True):
            key = sample_key(sample, normalized=normalized)
            first = seen[normalized].setdefault(key, sample)
            if first is not sample:
                counts[sample.dataset][normalized] += 1
                examples.setdefault(sample.dataset, (first.location, sample.location))
    return {
        name: Duplicates(count[False], count[True], examples.get(name))
        for name, count in counts.items()
    }
