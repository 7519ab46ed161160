"""Signs that a run is going wrong, found in the values it logs.

Each check is fed the values as they are logged and answers with an `Alert` or None. The
monitor prints the first alert of each kind and records every one; the checks themselves only
judge, so they can be tested on made-up sequences.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

NONFINITE = "nonfinite_loss"
GRAD_SPIKE = "grad_norm_spike"
OVERFITTING = "overfitting"
NOT_MOVING = "weights_not_moving"


@dataclass(frozen=True)
class Alert:
    kind: str
    step: int
    message: str


@dataclass
class HealthChecks:
    """Judges loss, gradient norm, validation loss and weight movement over a run.

    spike_factor: a gradient norm this many times the running median is a spike.
    overfit_evals: validation loss rising at this many validations in a row, while the training
    loss fell, is over-fitting. still_change: a relative weight change below this is "not moving".
    """

    spike_factor: float = 10.0
    spike_history: int = 5
    spike_window: int = 50
    overfit_evals: int = 3
    still_change: float = 1e-6
    grad_norms: list[float] = field(default_factory=list)
    window_losses: list[float] = field(default_factory=list)
    evals: list[tuple[float, float]] = field(default_factory=list)
    lr_started: bool = False

    def train_log(self, step: int, logs: dict[str, float]) -> Alert | None:
        """A training log entry (loss, grad_norm, learning_rate); NaN/inf values are the
        monitor's to act on (`nonfinite_alert`) and are left out of the history here."""
        loss, grad = logs.get("loss"), logs.get("grad_norm")
        if logs.get("learning_rate", 0) > 0:
            self.lr_started = True
        if loss is not None and math.isfinite(loss):
            self.window_losses.append(loss)
        if grad is not None and math.isfinite(grad):
            return self._grad_spike(step, grad)
        return None

    def _grad_spike(self, step: int, grad: float) -> Alert | None:
        history = self.grad_norms[-self.spike_window :]
        self.grad_norms = [*history, grad]
        if len(history) < self.spike_history:
            return None
        median = statistics.median(history)
        if median > 0 and grad > self.spike_factor * median:
            return Alert(
                GRAD_SPIKE,
                step,
                f"gradient norm {grad:.3g} at step {step} is {grad / median:.0f}x its "
                f"running median {median:.3g}: training may be unstable; consider a "
                f"lower learning_rate or max_grad_norm",
            )
        return None

    def eval_log(self, step: int, eval_loss: float) -> Alert | None:
        """A validation: over-fitting when it rose `overfit_evals` times in a row while the
        mean training loss (over the logs since the previous validation) fell."""
        if not self.window_losses:
            return None
        train = sum(self.window_losses) / len(self.window_losses)
        self.window_losses = []
        self.evals.append((eval_loss, train))
        recent = self.evals[-(self.overfit_evals + 1) :]
        if len(recent) <= self.overfit_evals:
            return None
        rising = all(later[0] > earlier[0] for earlier, later in itertools.pairwise(recent))
        if rising and recent[-1][1] < recent[0][1]:
            return Alert(
                OVERFITTING,
                step,
                f"validation loss rose at {self.overfit_evals} validations in a row "
                f"({recent[0][0]:.4f} -> {recent[-1][0]:.4f}) while the training loss "
                f"fell ({recent[0][1]:.4f} -> {recent[-1][1]:.4f}): the model is "
                f"over-fitting; consider early_stopping_steps, fewer epochs or more data",
            )
        return None

    def weight_change(self, step: int, relative_change: float) -> Alert | None:
        """Trained weights that barely changed although the learning rate was above zero."""
        if step < 1 or not self.lr_started or relative_change >= self.still_change:
            return None
        return Alert(
            NOT_MOVING,
            step,
            f"the trained weights have changed by {relative_change:.2g} of their norm "
            f"after {step} steps: they are not moving; check learning_rate and that the "
            f"trained modules are used by the loss",
        )

    def state(self) -> dict[str, Any]:
        """What a resumed run needs to go on judging as before."""
        return {
            k: v
            for k, v in asdict(self).items()
            if k in ("grad_norms", "window_losses", "evals", "lr_started")
        }


def nonfinite_alert(step: int, last_good: str | None) -> Alert:
    """The loss or gradients became NaN/inf: training stops before the update is applied (it
    is dropped, or skipped by the fp16 loss scaler) and before anything is saved."""
    kept = f"; last complete checkpoint: {last_good}" if last_good else ""
    return Alert(
        NONFINITE,
        step,
        f"loss or gradients are NaN/inf at step {step}: training stopped, that step's "
        f"update was dropped and the weights of step {step - 1} are kept as the "
        f"result{kept}. Lower learning_rate, set max_grad_norm, or use bf16/fp32",
    )
