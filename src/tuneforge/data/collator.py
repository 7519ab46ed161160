"""Batch rows into tensors, without computing on padding where the model allows.

Three layouts (`RunConfig.batching`):

- ``padded``: one sample per row, right-padded to the batch's longest, with an attention mask.
- ``packed``: rows already packed to cutoff_len (`data.packing`) get no attention mask —
  transformers then separates samples by their restarting ``position_ids`` — and the padded
  tail is given positions that restart at 0 too, so it forms a segment no real token attends
  to.
- ``padding_free``: the batch's samples back to back in one row, positions restarting at each
  sample and its first label -100 (it is not predicted from the previous sample's end): no
  padding at all, the same samples per step as ``padded``.

Padding never reaches the loss (labels -100).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tuneforge.config.schema import Batching
from tuneforge.data.packing import join_samples
from tuneforge.data.templates import IGNORE_INDEX


@dataclass(frozen=True)
class Collator:
    """Picklable (dataloader workers) batch function; build it with `build_collator`."""

    pad_id: int
    batching: Batching

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.batching == "padding_free":
            row = join_samples((row["input_ids"], row["labels"]) for row in rows)
            return _tensors({name: [values] for name, values in row.items()})
        width = max(len(row["input_ids"]) for row in rows)
        packed = self.batching == "packed"
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if packed else "attention_mask"] = []
        for row in rows:
            length = len(row["input_ids"])
            pad = width - length
            batch["input_ids"].append([*row["input_ids"], *[self.pad_id] * pad])
            batch["labels"].append([*row["labels"], *[IGNORE_INDEX] * pad])
            if packed:
                positions = row.get("position_ids") or range(length)
                batch["position_ids"].append([*positions, *range(pad)])
            else:
                batch["attention_mask"].append([1] * length + [0] * pad)
        return _tensors(batch)


def _tensors(batch: dict[str, list[list[int]]]) -> dict[str, torch.Tensor]:
    return {name: torch.tensor(values, dtype=torch.long) for name, values in batch.items()}


def build_collator(tokenizer: Any, *, batching: Batching) -> Collator:
    """Pad with the tokenizer's pad token (eos when it has none; padding is masked anyway)."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return Collator(pad_id, batching)
