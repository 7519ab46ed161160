"""Dynamic Fine-Tuning (DFT, Wu et al. 2025; LLaMA-Factory's ``use_dft_loss``): each target
token's cross-entropy weighted by the model's own probability of it, held constant.

Plain SFT's gradient on a token the model finds unlikely is large, which the paper reads as
an implicit reward that overfits rare tokens; the weight rescales it to the token's
probability. The fused loss computes the same weighting chunk by chunk (`fused_loss.py`);
this is the path through the model's logits, for runs where the fused loss is off.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def dft_loss(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
    """The Trainer's ``compute_loss_func``: next-token DFT loss summed over target tokens,
    divided by the accumulated batch's target count (or this batch's)."""
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
    targets = labels[:, 1:].reshape(-1).to(logits.device)
    token_loss = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        targets,
        ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    weighted = (token_loss * torch.exp(-token_loss).detach()).sum()
    count = (
        num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE_INDEX).sum()
    )
    return weighted / torch.as_tensor(count, device=weighted.device).clamp(min=1)
