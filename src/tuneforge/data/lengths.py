"""Token lengths of samples, counted as training encodes them, and the cutoff_len they suggest.

Lengths are tokens of the configured model rendered through the configured template, exactly
what ``cutoff_len`` is compared with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tuneforge.data.samples import Sample
from tuneforge.data.templates import Template

# cutoff_len suggestions are rounded up to a multiple of this.
CUTOFF_STEP = 64


@dataclass(frozen=True)
class Lengths:
    """Token counts of one part of the samples: min, percentiles and max."""

    values: tuple[int, ...]

    def percentile(self, share: float) -> int:
        if not self.values:
            return 0
        return int(np.percentile(np.asarray(self.values), share, method="higher"))

    def row(self) -> list[int]:
        return [
            min(self.values, default=0),
            *(self.percentile(p) for p in (50, 90, 95, 99)),
            max(self.values, default=0),
        ]


@dataclass(frozen=True)
class TokenLengths:
    prompt: Lengths
    response: Lengths | None
    total: Lengths


def token_lengths(
    samples: Iterable[Sample], template: Template | None, tokenizer: Any, *, add_eos: bool = False
) -> TokenLengths:
    """Prompt / response / total tokens per usable sample, as training would encode them
    (`add_eos`: pt ends every document with the end-of-sequence token)."""
    prompt: list[int] = []
    response: list[int] = []
    eos = int(add_eos and tokenizer.eos_token_id is not None)
    usable = [sample for sample in samples if not sample.problem]
    for sample in tqdm(usable, desc="Counting tokens", leave=False):
        if template is None:
            prompt.append(len(tokenizer(sample.text or "")["input_ids"]) + eos)
            continue
        tools = json.loads(sample.tools) if sample.tools else None
        segments = template.encode_segments(list(sample.messages), tools=tools)
        answer = sum(len(segment.ids) for segment in segments if segment.assistant)
        prompt.append(sum(len(segment.ids) for segment in segments) - answer)
        response.append(answer)
    totals = (
        [p + r for p, r in zip(prompt, response, strict=True)] if template is not None else prompt
    )
    return TokenLengths(
        Lengths(tuple(prompt)),
        Lengths(tuple(response)) if template is not None else None,
        Lengths(tuple(totals)),
    )


def suggest_cutoff_len(lengths: Lengths) -> int:
    """The 95th percentile of sample lengths, rounded up to a multiple of CUTOFF_STEP."""
    return max(CUTOFF_STEP, CUTOFF_STEP * math.ceil(lengths.percentile(95) / CUTOFF_STEP))
