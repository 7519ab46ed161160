"""Batch rows into tensors, padding each batch only to its longest row.

Unpacked rows are right-padded with an attention mask. Packed rows get no attention mask —
transformers then separates samples by their restarting ``position_ids`` — and the padded tail
is given positions that restart at 0 too, so it forms a segment of its own that no real token
attends to. Padding never reaches the loss (labels -100).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tuneforge.data.templates import IGNORE_INDEX


@dataclass(frozen=True)
class Collator:
    """Picklable (dataloader workers) batch function; build it with `build_collator`."""

    pad_id: int
    packing: bool

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if self.packing else "attention_mask"] = []
        for row in rows:
            length = len(row["input_ids"])
            pad = width - length
            batch["input_ids"].append([*row["input_ids"], *[self.pad_id] * pad])
            batch["labels"].append([*row["labels"], *[IGNORE_INDEX] * pad])
            if self.packing:
                positions = row.get("position_ids") or range(length)
                batch["position_ids"].append([*positions, *range(pad)])
            else:
                batch["attention_mask"].append([1] * length + [0] * pad)
        return {name: torch.tensor(values, dtype=torch.long) for name, values in batch.items()}


def build_collator(tokenizer: Any, *, packing: bool) -> Collator:
    """Pad with the tokenizer's pad token (eos when it has none; padding is masked anyway)."""
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    return Collator(pad_id, packing)
