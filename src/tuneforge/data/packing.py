"""Pack encoded samples into rows of at most ``cutoff_len`` tokens.

Padding was most of the positions in mixed-length batches on CPU, so rows are filled with
whole samples by first-fit-decreasing (deterministic, no sample split, no token lost). Each
row carries ``position_ids`` that restart at 0 for every sample: with no attention mask and no
cache, transformers builds a block-diagonal causal mask from them, so samples in one row never
attend to each other. The first label of each sample is -100 so it is not predicted from the
end of the previous sample.

A stream (``streaming: true``) is packed the same way one window of samples at a time
(`PackWindow`), since first-fit-decreasing needs the samples it sorts in hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import datasets

from tuneforge.data.templates import IGNORE_INDEX

PACKED_FEATURES = datasets.Features(
    {
        "input_ids": datasets.List(datasets.Value("int32")),
        "labels": datasets.List(datasets.Value("int32")),
        "position_ids": datasets.List(datasets.Value("int32")),
    }
)


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins (lists of sample indices) filled longest-first, each sample in the first bin it
    fits. A max-tree over the bins' free space finds that bin in O(log n)."""
    if any(length > capacity for length in lengths):
        raise ValueError(f"a sample is longer than the row capacity {capacity}")
    size = 1
    while size < max(len(lengths), 1):
        size *= 2
    free = [capacity] * (2 * size)
    bins: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        node = 1
        while node < size:
            node = 2 * node if free[2 * node] >= lengths[index] else 2 * node + 1
        slot = node - size
        if slot == len(bins):
            bins.append([])
        bins[slot].append(index)
        free[node] -= lengths[index]
        node //= 2
        while node:
            free[node] = max(free[2 * node], free[2 * node + 1])
            node //= 2
    return bins


def pack(dataset: datasets.Dataset, cutoff_len: int) -> datasets.Dataset:
    """Rows of whole samples with restarting position_ids; see the module docstring."""
    rows = pack_samples(dataset["input_ids"], dataset["labels"], cutoff_len)
    return datasets.Dataset.from_dict(rows, features=PACKED_FEATURES)


def pack_samples(
    input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], cutoff_len: int
) -> dict[str, list[list[int]]]:
    """The packed rows of these samples, as columns (input_ids, labels, position_ids)."""
    rows: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    for members in first_fit_decreasing([len(ids) for ids in input_ids], cutoff_len):
        row = join_samples((input_ids[index], labels[index]) for index in members)
        for name, values in row.items():
            rows[name].append(values)
    return rows


def join_samples(samples: Iterable[tuple[Sequence[int], Sequence[int]]]) -> dict[str, list[int]]:
    """One row of (input_ids, labels) samples back to back: positions restart at 0 for each,
    and each sample's first label is -100 (not predicted from the previous sample's end)."""
    row: dict[str, list[int]] = {"input_ids": [], "labels": [], "position_ids": []}
    for sample_ids, sample_labels in samples:
        row["input_ids"] += sample_ids
        row["labels"] += [IGNORE_INDEX, *sample_labels[1:]]
        row["position_ids"] += range(len(sample_ids))
    return row


@dataclass(frozen=True)
class PackWindow:
    """Picklable batched map function for a stream: each batch (window) of samples packed
    as `pack` packs a whole dataset; a sample never spans two windows."""

    cutoff_len: int

    def __call__(self, batch: dict[str, list[Any]]) -> dict[str, list[list[int]]]:
        return pack_samples(batch["input_ids"], batch["labels"], self.cutoff_len)
