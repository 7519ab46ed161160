"""What a classifier run (stage cls) will cost here, before it starts: its steps and epochs,
its cutoff_len against the texts' token lengths, and its wall time on this machine.

The time is counted, not guessed from a table: matrix-multiply FLOPs per token of this model
(forward, backward, the probe's and the validations' forward passes) times the tokens the
batches will hold once padded, divided by the speed this machine multiplies matrices at right
now (measured for a fraction of a second, in the precision training computes in, so other
jobs on the machine count) and by the share of that speed a whole training step reaches.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tuneforge.config.schema import RunConfig
from tuneforge.data.lengths import Lengths
from tuneforge.models import Hardware, choose_precision, detect_hardware, load_tokenizer
from tuneforge.planning.advice import (
    Advice,
    classifier_advice,
    effective_batch,
    training_samples,
)
from tuneforge.planning.shape import ModelShape, model_shape
from tuneforge.training.classifier import probes_head

logger = logging.getLogger(__name__)

# The share of the measured matrix-multiply speed a classifier's training step reaches
# (attention, norms, the optimizer and Python take the rest), and a forward-only pass (the
# probe's features, validation): the default model's LP-FT runs on a quiet 2-core CPU in
# docs/benchmarks.md (800 English tweets, 800 Chinese reviews), measured wall time against
# FLOPs: training 62-66 GFLOP/s, forwards 52-58, where the timed multiply gives ~100.
STEP_EFFICIENCY = 0.65
FORWARD_EFFICIENCY = 0.55
# Rows in the timed multiply: a typical batch x length of a classifier run.
TIMED_ROWS = 512
# The multiply is timed in short rounds and the median kept: one round's speed varies by
# a third while threads wake and the CPU's clock settles.
TIMED_ROUNDS = 5
TIMED_SECONDS = 0.1


@dataclass(frozen=True)
class TimeEstimate:
    """Seconds a cls run will take, in parts, and the speed they were counted at."""

    train: float
    probe: float
    evaluation: float
    flops_per_second: float

    @property
    def total(self) -> float:
        return self.train + self.probe + self.evaluation


def matmul_speed(width: int, inner: int, dtype: torch.dtype) -> float:
    """FLOP/s of a (TIMED_ROWS x width) @ (width x inner) multiply on this machine now."""
    left = torch.randn(TIMED_ROWS, width, dtype=dtype)
    right = torch.randn(width, inner, dtype=dtype)
    torch.matmul(left, right)  # warm-up: kernels chosen, memory touched
    speeds = []
    for _ in range(TIMED_ROUNDS):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < TIMED_SECONDS:
            torch.matmul(left, right)
            count += 1
        speeds.append(2 * TIMED_ROWS * width * inner * count / elapsed)
    return float(np.median(speeds))


def padded_tokens(lengths: Sequence[int], batch: int, *, grouped: bool, seed: int) -> int:
    """Tokens the batches of `lengths` hold once each is padded to its longest text:
    random batches, or (`grouped`) batches of similar lengths."""
    order = np.sort(lengths) if grouped else np.random.default_rng(seed).permutation(lengths)
    return int(sum(len(part) * int(part.max()) for part in _chunks(order, batch)))


def _chunks(values: np.ndarray, size: int) -> list[np.ndarray]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _batches(count: int, batch: int) -> int:
    return max(1, math.ceil(count / batch))


def classifier_time(
    cfg: RunConfig, shape: ModelShape, lengths: Sequence[int], samples: int, speed: float
) -> TimeEstimate:
    """The wall time of training, the probe and the validations, for `samples` texts read
    (training + validation split) of which `lengths` are the token counts."""
    t = cfg.train
    cut = [min(length, cfg.data.cutoff_len) for length in lengths] or [1]
    mean = float(np.mean(cut))
    train = training_samples(cfg, samples)
    validation = samples - train
    per_epoch = _batches(train, effective_batch(cfg))
    steps = t.max_steps if t.max_steps > 0 else math.ceil(t.num_train_epochs * per_epoch)
    epoch_tokens = padded_tokens(
        cut, t.per_device_train_batch_size, grouped=t.group_by_length, seed=t.seed
    ) * (train / len(cut))
    train_tokens = epoch_tokens * steps / per_epoch

    forward = 2 * shape.body_params + 4 * shape.num_layers * shape.hidden_size * mean
    if cfg.finetune.finetuning_type == "full":
        backward = 2 * forward
    else:  # gradients of the activations, and of the few weights that train
        backward = forward + 2 * shape.trainable_params
    if t.gradient_checkpointing:
        backward += forward
    rate, forward_rate = speed * STEP_EFFICIENCY, speed * FORWARD_EFFICIENCY
    probe_texts = samples if probes_head(cfg) else 0
    evaluations = _evaluations(cfg, steps, per_epoch) if validation else 0
    return TimeEstimate(
        train=train_tokens * (forward + backward) / rate,
        probe=probe_texts * mean * forward / forward_rate,
        evaluation=evaluations * validation * mean * forward / forward_rate,
        flops_per_second=speed,
    )


def _evaluations(cfg: RunConfig, steps: int, per_epoch: int) -> int:
    """Validations during the run, and the final one."""
    t = cfg.train
    strategy = t.eval_strategy or "steps"
    if strategy == "no":
        return 1
    if strategy == "epoch":
        return math.ceil(steps / per_epoch) + 1
    return steps // (t.eval_steps or t.logging_steps) + 1


def time_advice(estimate: TimeEstimate) -> Advice:
    parts = f"training {_minutes(estimate.train)}, probe {_minutes(estimate.probe)}, "
    parts += f"validation {_minutes(estimate.evaluation)}"
    return Advice(
        "wall time",
        f"about {_minutes(estimate.total)}",
        parts,
        f"matrix-multiply FLOPs per padded token / {estimate.flops_per_second / 1e9:.0f} "
        f"GFLOP/s measured here now, at {STEP_EFFICIENCY:.0%} of it per training step and "
        f"{FORWARD_EFFICIENCY:.0%} per forward pass; other jobs on the machine slow it further",
        True,
    )


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def classifier_budget(
    cfg: RunConfig, shape: ModelShape, data: Any | None, hardware: Hardware
) -> list[Advice]:
    """The cls rows of the advice table; `data` is `tuneforge data inspect`'s report (None:
    not read, so only what the config alone says)."""
    lengths: Lengths | None = data.lengths.total if data is not None else None
    samples = data.samples if data is not None else None
    train = training_samples(cfg, samples) if samples is not None else None
    rows = classifier_advice(cfg, train, lengths)
    if samples and lengths is not None and lengths.values:
        dtype = choose_precision(cfg.train, hardware).compute_dtype
        speed = matmul_speed(shape.hidden_size, shape.intermediate_size, dtype)
        rows.append(time_advice(classifier_time(cfg, shape, lengths.values, samples, speed)))
    return rows


def log_classifier_budget(cfg: RunConfig) -> None:
    """The training log's version of the plan's cls rows: one line each, a warning for each
    one outside the advised range (`tuneforge plan` shows the same rows)."""
    from tuneforge.data.inspect import inspect_datasets

    data = inspect_datasets(cfg, load_tokenizer(cfg.model))
    for row in classifier_budget(cfg, model_shape(cfg), data, detect_hardware()):
        log = logger.info if row.ok else logger.warning
        log("Budget: %s %s; advised %s: %s", row.setting, row.value, row.advised, row.why)
    if cfg.data.eval_dataset:
        logger.info("Budget: validation on eval_dataset is not counted in the wall time")
