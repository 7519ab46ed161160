"""``mix_strategy``: several training datasets into one, read whole or streamed alike."""

from __future__ import annotations

import logging
from typing import TypeVar

import datasets

logger = logging.getLogger(__name__)

Rows = TypeVar("Rows", datasets.Dataset, datasets.IterableDataset)


def mix(parts: list[Rows], strategy: str, chances: list[float] | None, seed: int) -> Rows:
    """The datasets one after another (concat), or their rows drawn by chance until the first
    one runs out (interleave_under) or the last one does (interleave_over, repeating the
    others)."""
    if strategy == "concat" or len(parts) == 1:
        return datasets.concatenate_datasets(parts)
    stopping = "first_exhausted" if strategy == "interleave_under" else "all_exhausted"
    mixed = datasets.interleave_datasets(
        parts, probabilities=chances, seed=seed, stopping_strategy=stopping
    )
    size = f"{len(mixed):,} rows" if isinstance(mixed, datasets.Dataset) else "streamed"
    logger.info(
        "Mixing %d datasets (%s, chances %s): %s",
        len(parts),
        strategy,
        ", ".join(f"{p:g}" for p in chances) if chances else "equal",
        size,
    )
    return mixed
