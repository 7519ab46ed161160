"""The linear probe: the classification head fitted on the model's own features before the
first step, so that fine-tuning starts from a working classifier (LP-FT, Kumar et al. 2022).

A random head makes the first hundred steps spend their updates undoing it: with a few
hundred texts and one epoch the run ends near chance. A logistic regression on the pooled
hidden states of the training texts takes seconds, is often a good classifier by itself, and
as the head's initial weights it leaves the adapter to improve on it rather than rescue it.

The features are read through the model's own forward (a hook makes the head return what its
linear layer sees), so they are pooled exactly as training, eval and predict pool, under the
same autocast; the head computes exactly the probe's logits at step 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import DataCollatorWithPadding

from tuneforge.eval.metrics import classification_metrics
from tuneforge.models.adapters import classifier_heads
from tuneforge.models.pooling import token_features
from tuneforge.models.precision import Precision

logger = logging.getLogger(__name__)

# Inverse regularisation strengths tried by cross-validation (features scaled to unit spread).
PROBE_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
PROBE_FOLDS = 5
# Features a bf16 forward can round to the same value must not give a zero spread.
MIN_SPREAD = 1e-6


@dataclass(frozen=True)
class Probe:
    """The fitted head: `weight` (classes x width) and `bias` (classes, or None for a head
    without one), how well it does on the training texts and on the validation texts
    (`scores`, None without validation data), its regularisation and what it cost."""

    weight: np.ndarray
    bias: np.ndarray | None
    train_accuracy: float
    scores: dict[str, float] | None
    strength: float
    seconds: float

    def logits(self, features: np.ndarray) -> np.ndarray:
        out = features.astype(np.float64) @ self.weight.T
        return out + self.bias if self.bias is not None else out


def head_module(model: torch.nn.Module) -> torch.nn.Module:
    """The classification head as the model calls it (peft's trained copy wrapped inside)."""
    names = classifier_heads(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no classification head")
    return getattr(model, names[0])


def head_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The head's linear layers: the head itself, or under peft its original and its copy."""
    return [m for m in head_module(model).modules() if isinstance(m, torch.nn.Linear)]


@contextmanager
def _features_instead_of_logits(model: torch.nn.Module) -> Iterator[None]:
    """While active, the head returns its linear layer's input, so the model's pooled output
    is the feature vector the head reads for each text."""

    def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Any) -> torch.Tensor:
        return token_features(module, args[0])

    handles = [linear.register_forward_hook(hook) for linear in head_linears(model)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def pooled_features(
    model: torch.nn.Module,
    rows: Any,
    tokenizer: Any,
    precision: Precision,
    batch_size: int,
) -> np.ndarray:
    """(texts, width) float32 features of encoded `rows`, in their order: longest first in
    batches (little padding), right-padded, in the precision training computes in."""
    ids = list(rows["input_ids"])
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    collate = DataCollatorWithPadding(tokenizer)
    device = next(model.parameters()).device
    autocast = torch.autocast(
        device.type, dtype=precision.compute_dtype, enabled=precision.bf16 or precision.fp16
    )
    parts: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    try:
        with _features_instead_of_logits(model), torch.inference_mode(), autocast:
            for start in range(0, len(order), batch_size):
                batch = collate([{"input_ids": ids[i]} for i in order[start : start + batch_size]])
                out = model(**{key: value.to(device) for key, value in batch.items()})
                parts.append(out.logits.float().cpu().numpy())
    finally:
        model.train(was_training)
    features = np.empty((len(ids), parts[0].shape[-1]), dtype=np.float32)
    features[order] = np.concatenate(parts)
    return features


def fit_probe(
    train: np.ndarray,
    train_labels: Sequence[int],
    classes: int,
    *,
    with_bias: bool,
    seed: int,
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """A logistic regression (L-BFGS, L2 strength by cross-validated log-loss) turned
    into head weights: (classes x width, bias or None, the chosen C).

    Features are divided by their spread (not centred: a head without a bias could not undo
    a shift) and the weights by it again, so they apply to the raw features. Binary
    regression gives one direction; the two rows get half of it each, with opposite signs,
    which is the same softmax. A class the training texts lack keeps zero weights.
    """
    from sklearn.linear_model import LogisticRegression

    spread = np.maximum(np.sqrt(np.mean(np.square(train, dtype=np.float64), axis=0)), MIN_SPREAD)
    scaled = train / spread
    labels = np.asarray(train_labels)
    strength = _choose_strength(scaled, labels, with_bias=with_bias, seed=seed)
    regression = LogisticRegression(C=strength, fit_intercept=with_bias, max_iter=2000)
    regression.fit(scaled, labels)
    coef = regression.coef_ / spread
    intercept = regression.intercept_ if with_bias else np.zeros(len(coef))
    present = [int(c) for c in regression.classes_]
    if len(present) == 2:
        coef = np.stack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    weight = np.zeros((classes, train.shape[1]))
    bias = np.zeros(classes)
    weight[present], bias[present] = coef, intercept
    return weight, (bias if with_bias else None), strength


def _choose_strength(
    features: np.ndarray, labels: np.ndarray, *, with_bias: bool, seed: int
) -> float:
    """The C of PROBE_CS with the lowest held-out log-loss over stratified folds (1.0 when a
    class has a single text and cannot be split)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import StratifiedKFold

    present = np.unique(labels)
    folds = min(PROBE_FOLDS, int(np.bincount(labels)[present].min()))
    if folds < 2:
        return 1.0
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, labels))
    losses = []
    for strength in PROBE_CS:
        loss = 0.0
        for fit, held in splits:
            regression = LogisticRegression(C=strength, fit_intercept=with_bias, max_iter=2000)
            regression.fit(features[fit], labels[fit])
            loss += log_loss(labels[held], regression.predict_proba(features[held]), labels=present)
        losses.append(loss)
    return PROBE_CS[int(np.argmin(losses))]


def train_probe(
    model: torch.nn.Module,
    train_rows: Any,
    eval_rows: Any | None,
    names: Sequence[str],
    tokenizer: Any,
    precision: Precision,
    *,
    batch_size: int,
    seed: int,
) -> Probe:
    """Features of the training (and validation) texts, the regression, and its scores."""
    start = time.perf_counter()
    train = pooled_features(model, train_rows, tokenizer, precision, batch_size)
    with_bias = any(linear.bias is not None for linear in head_linears(model))
    labels = list(train_rows["labels"])
    weight, bias, strength = fit_probe(train, labels, len(names), with_bias=with_bias, seed=seed)
    probe = Probe(weight, bias, 0.0, None, strength, 0.0)
    train_accuracy = float(np.mean(probe.logits(train).argmax(-1) == np.asarray(labels)))
    scores = None
    if eval_rows is not None:
        features = pooled_features(model, eval_rows, tokenizer, precision, batch_size)
        scores = classification_metrics(
            list(eval_rows["labels"]), probe.logits(features).argmax(-1).tolist(), names
        )
    return Probe(weight, bias, train_accuracy, scores, strength, time.perf_counter() - start)


def install_head(model: torch.nn.Module, probe: Probe) -> None:
    """Copy the probe into every linear layer of the head (under peft: the original and the
    trained copy), so that step 0 classifies as the probe does."""
    with torch.no_grad():
        for linear in head_linears(model):
            linear.weight.copy_(torch.as_tensor(probe.weight, dtype=linear.weight.dtype))
            if linear.bias is not None and probe.bias is not None:
                linear.bias.copy_(torch.as_tensor(probe.bias, dtype=linear.bias.dtype))
