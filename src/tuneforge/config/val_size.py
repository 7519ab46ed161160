"""``val_size``: a share of the samples or a count of them, read one way everywhere.

The split held out for validation (data) and the memory plan's advice on steps and epochs
(planning) must agree on how many samples are left for training.
"""

from __future__ import annotations


def validation_count(val_size: float, samples: int) -> int:
    """Samples `val_size` holds out of `samples`: below 1 a rounded share, else the count."""
    return int(val_size) if val_size >= 1 else round(val_size * samples)
