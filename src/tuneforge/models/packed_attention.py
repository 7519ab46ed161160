"""Attention over packed rows that does only each sample's own work.

A packed row holds several samples back to back, their ``position_ids`` restarting at 0 for
each. transformers' sdpa path keeps them apart with a block-diagonal mask over the whole row,
so a 512-token row of five 100-token samples still computes all 512 x 512 scores (five times
the useful work) and, with a mask, the CPU kernel cannot use its causal shortcut. Here each
sample runs as its own causal SDPA call over its own tokens: the same result (the mask only
zeroed the rest) for a fraction of the work. It is registered with transformers as
``PACKED_SDPA`` and falls back to transformers' sdpa for everything else (padding masks,
generation with a cache), so one model loaded this way trains, validates and generates.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

PACKED_SDPA = "tuneforge_packed_sdpa"


def sample_bounds(positions: torch.Tensor) -> list[list[int]]:
    """Per row, the start of each sample and the row's end: a sample starts wherever the
    position does not follow the one before (as transformers' packed-sequence detection)."""
    row_starts = torch.ones_like(positions, dtype=torch.bool)
    row_starts[:, 1:] = positions[:, 1:] != positions[:, :-1] + 1
    width = positions.shape[1]
    return [[*row.nonzero().squeeze(-1).tolist(), width] for row in row_starts]


def packed_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    attention_mask: torch.Tensor | None = None,
    **kwargs: Any,
) -> torch.Tensor | None:
    """No mask where there is no padding, no cache and no sliding window (the attention reads
    the samples from ``position_ids``); sdpa's own mask everywhere else."""
    plain = attention_mask is None and kwargs.get("local_size") is None
    if plain and q_offset == 0 and kv_offset == 0 and q_length == kv_length:
        return None
    return sdpa_mask(
        batch_size,
        q_length,
        kv_length,
        q_offset=q_offset,
        kv_offset=kv_offset,
        attention_mask=attention_mask,
        **kwargs,
    )


def packed_sdpa_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Causal SDPA per sample when the row is packed; transformers' sdpa otherwise."""
    positions = kwargs.get("position_ids")
    causal = getattr(module, "is_causal", True) and query.shape[2] == key.shape[2]
    if attention_mask is not None or positions is None or not causal:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout, scaling, **kwargs
        )
    bounds = sample_bounds(positions.expand(query.shape[0], -1))
    if all(len(row) == 2 for row in bounds):  # one sample per row: plain causal attention
        return sdpa_attention_forward(module, query, key, value, None, dropout, scaling, **kwargs)
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for b, row in enumerate(bounds):
        parts = [
            F.scaled_dot_product_attention(
                query[b : b + 1, :, start:end],
                key[b : b + 1, :, start:end],
                value[b : b + 1, :, start:end],
                dropout_p=dropout,
                is_causal=True,
                scale=scaling,
                enable_gqa=gqa,
            )
            for start, end in zip(row, row[1:], strict=False)
        ]
        rows.append(torch.cat(parts, dim=2))
    return torch.cat(rows).transpose(1, 2).contiguous(), None


AttentionInterface.register(PACKED_SDPA, packed_sdpa_forward)
ALL_MASK_ATTENTION_FUNCTIONS.register(PACKED_SDPA, packed_mask)
