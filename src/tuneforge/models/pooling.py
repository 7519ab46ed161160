"""What a classification head reads: the last token that is not padding, or the mean of them.

transformers' decoder classifiers (``score``) apply the head to every position and keep the
logits of the last token that is not padding. Mean pooling reuses that forward unchanged: its
head applies the linear layer to the *running* mean of the hidden states, so the position
transformers keeps holds the mean over the text's own tokens. Padding is on the right (the
loaders see to it) and causal attention keeps it from changing the real tokens, so a text
pads to any length with the same result. The weights keep their names and shapes (the saved
adapter or model is the same), but a plain transformers load reads the last token:
`use_mean_pooling` on the loaded model, before the adapter, restores what was trained.
"""

from __future__ import annotations

from typing import Literal

import torch

from tuneforge.errors import ModelError

Pooling = Literal["last", "mean"]
# The attribute transformers' decoder classifiers (Llama, Qwen, Mistral, ...) keep the head in.
SCORE = "score"


def running_mean(hidden: torch.Tensor) -> torch.Tensor:
    """(batch, length, width) -> the mean of positions 0..t at each position t (in float32:
    a long bf16 running sum loses the digits that tell two texts apart)."""
    counts = torch.arange(1, hidden.shape[-2] + 1, device=hidden.device, dtype=torch.float32)
    return (hidden.float().cumsum(-2) / counts.unsqueeze(-1)).to(hidden.dtype)


class MeanPooledScore(torch.nn.Linear):
    """A ``score`` head over the running mean of the hidden states (see the module's doc)."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return super().forward(running_mean(hidden))


def use_mean_pooling(model: torch.nn.Module) -> torch.nn.Module:
    """Make a loaded decoder classifier pool by mean, in place, its weights kept (shared)."""
    head = getattr(model, SCORE, None)
    if type(head) is not torch.nn.Linear:
        raise ModelError(
            f"cls_pooling: mean needs a decoder classifier with a linear '{SCORE}' head; "
            f"{type(model).__name__} has none; use cls_pooling: last"
        )
    pooled = MeanPooledScore(
        head.in_features, head.out_features, bias=head.bias is not None, device="meta"
    )
    pooled.weight = head.weight
    if head.bias is not None:
        pooled.bias = head.bias
    setattr(model, SCORE, pooled)
    return model


def token_features(head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """What `head`'s linear layer sees at each position: the features a probe is fitted on."""
    return running_mean(hidden) if isinstance(head, MeanPooledScore) else hidden
