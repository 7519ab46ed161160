"""Token accuracy during validation (LLaMA-Factory's ``compute_accuracy``): the share of
target tokens the model ranks first, beside eval_loss, for sft and pt."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

IGNORE_INDEX = -100


def most_likely_tokens(logits: Any, labels: torch.Tensor) -> torch.Tensor:
    """The Trainer's ``preprocess_logits_for_metrics``: keep each position's top token, not a
    vocabulary-wide row of logits, so validation holds ids instead of logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(dim=-1)


def token_accuracy(prediction: Any) -> dict[str, float]:
    """The Trainer's ``compute_metrics``: accuracy of the next-token predictions on the
    positions that count (labels not -100), shifted as the loss is."""
    predicted = np.asarray(prediction.predictions)[:, :-1]
    labels = np.asarray(prediction.label_ids)[:, 1:]
    counted = labels != IGNORE_INDEX
    hits = (predicted == labels) & counted
    return {"accuracy": float(hits.sum() / max(int(counted.sum()), 1))}
