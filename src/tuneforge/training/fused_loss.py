"""Linear + cross-entropy in chunks, with its own backward: the logits are never all in memory.

A causal LM's loss needs ``hidden @ lm_head.T`` for every trained position; over a 49,152-word
vocabulary, a 4 x 512 batch is 400 MB of fp32 logits, and autograd keeps that tensor, its
log-softmax and their gradients. This function computes the loss and its gradients a chunk
of positions at a time, during the forward pass, and keeps only the gradients with respect to
the hidden states (and the head's weight when it trains). Positions whose label is -100
(prompt, padding) are skipped before any matmul. The idea is Liger's fused linear
cross-entropy, which is CUDA-only (Triton); this one is plain PyTorch and runs anywhere.
"""

from __future__ import annotations

from typing import Any

import torch

IGNORE_INDEX = -100
# Positions per chunk: 256 x 49,152 fp32 logits is 50 MB, small beside the model.
CHUNK_ROWS = 256


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        denominator: torch.Tensor,
        chunk_rows: int,
        dft: bool,
    ) -> torch.Tensor:
        keep = (labels != IGNORE_INDEX).nonzero().squeeze(-1)
        rows, targets = hidden.index_select(0, keep), labels.index_select(0, keep)
        want_hidden, want_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_rows = torch.zeros_like(rows, dtype=torch.float32) if want_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if want_weight else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        head = weight.float()
        for start in range(0, rows.shape[0], chunk_rows):
            part = rows[start : start + chunk_rows].float()
            target = targets[start : start + chunk_rows]
            logits = part @ head.T
            log_z = torch.logsumexp(logits, dim=-1)
            picked = logits.gather(1, target[:, None]).squeeze(1)
            token_loss = log_z - picked
            # DFT: each token's loss weighted by its own probability, held constant.
            token_weight = torch.exp(-token_loss) if dft else None
            total += (token_loss if token_weight is None else token_loss * token_weight).sum()
            if grad_rows is None and grad_weight is None:
                continue
            # d(loss)/d(logits) = softmax - one_hot, computed in place over the chunk
            grad_logits = logits.sub_(log_z[:, None]).exp_()
            grad_logits[torch.arange(target.shape[0], device=target.device), target] -= 1
            if token_weight is not None:
                grad_logits.mul_(token_weight[:, None])
            if grad_rows is not None:
                grad_rows[start : start + chunk_rows] = grad_logits @ head
            if grad_weight is not None:
                grad_weight += grad_logits.T @ part
        ctx.save_for_backward(keep, denominator)
        ctx.hidden_shape, ctx.hidden_dtype = hidden.shape, hidden.dtype
        ctx.grads = (grad_rows, grad_weight, weight.dtype)
        return total / denominator

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[Any, ...]:
        keep, denominator = ctx.saved_tensors
        grad_rows, grad_weight, weight_dtype = ctx.grads
        scale = grad_output / denominator
        grad_hidden = None
        if grad_rows is not None:
            grad_hidden = torch.zeros(ctx.hidden_shape, dtype=torch.float32, device=keep.device)
            grad_hidden.index_copy_(0, keep, grad_rows * scale)
            grad_hidden = grad_hidden.to(ctx.hidden_dtype)
        if grad_weight is not None:
            grad_weight = (grad_weight * scale).to(weight_dtype)
        return grad_hidden, grad_weight, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    denominator: torch.Tensor | int | None = None,
    *,
    chunk_rows: int = CHUNK_ROWS,
    dft: bool = False,
) -> torch.Tensor:
    """``cross_entropy(hidden @ weight.T, labels, reduction="sum") / denominator`` without the
    logits: `hidden` is (positions, width), `weight` (vocabulary, width), `labels` (positions,)
    with -100 for positions that do not count. The denominator defaults to the number of
    counted positions (a mean); the trainer passes the tokens of the whole accumulated batch.
    `dft` weights each token's loss by its probability, detached (Dynamic Fine-Tuning).
    """
    if denominator is None:
        denominator = (labels != IGNORE_INDEX).sum().clamp(min=1)
    scale = torch.as_tensor(denominator, dtype=torch.float32, device=hidden.device)
    loss: torch.Tensor = _LinearCrossEntropy.apply(hidden, weight, labels, scale, chunk_rows, dft)
    return loss


def causal_lm_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    denominator: torch.Tensor | int | None = None,
    *,
    dft: bool = False,
) -> torch.Tensor:
    """The next-token loss of a batch of hidden states (batch, length, width) against labels
    (batch, length), shifted as transformers' causal LMs shift them."""
    width = hidden.shape[-1]
    shifted = labels[:, 1:].reshape(-1)
    rows = hidden[:, :-1].reshape(-1, width)
    return linear_cross_entropy(rows, weight, shifted, denominator, dft=dft)
