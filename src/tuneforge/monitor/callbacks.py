"""The training monitor: what a run logs besides the loss, where it goes, and its warnings.

At every logging step it adds useful tokens/s (over training time only, not validation or
saving), samples seen and memory in use to the log entry, which `JsonlLogCallback` then writes
to ``trainer_log.jsonl``; every entry also goes to the sinks in ``report_to``. Norms and
histograms of the trained weights are logged every ``weight_stats_steps`` (default: at each
validation, or each logging step without validation data). `HealthChecks` judge the values; a
NaN/inf loss stops the run before the bad update reaches the weights or a checkpoint.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_callback import ExportableState

from tuneforge.config.schema import RunConfig
from tuneforge.layout import PLOT_NAME, complete_checkpoints
from tuneforge.monitor.alerts import Alert, HealthChecks, nonfinite_alert
from tuneforge.monitor.loss_plot import plot_loss
from tuneforge.monitor.sinks import Sink, open_sinks
from tuneforge.monitor.weights import WeightStats, WeightTracker
from tuneforge.training.callbacks import append_log

logger = logging.getLogger(__name__)


def memory_in_use() -> dict[str, float]:
    """Resident memory of this process (and CUDA memory allocated by torch), in GB."""
    import psutil

    out = {"memory_rss_gb": psutil.Process().memory_info().rss / 2**30}
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
        out["peak_memory_rss_gb"] = peak / (2**30 if sys.platform == "darwin" else 2**20)
    except ImportError:  # Windows has no resource module
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["memory_cuda_gb"] = torch.cuda.memory_allocated() / 2**30
        out["peak_memory_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def tag(key: str) -> str:
    """Log key -> sink tag: ``eval_loss`` -> ``eval/loss``, ``loss`` -> ``train/loss``
    (and the end-of-training summary ``train_loss`` -> ``train/train_loss``, not the curve)."""
    if key.startswith("eval_"):
        return "eval/" + key.removeprefix("eval_")
    return "train/" + key


class TrainingMonitor(TrainerCallback, ExportableState):
    """Extra log values, weight statistics, sinks and health warnings for one run."""

    def __init__(self, cfg: RunConfig, *, has_eval: bool) -> None:
        self.output_dir = Path(cfg.train.output_dir)
        self.plot_path = self.output_dir / PLOT_NAME if cfg.train.plot_loss else None
        self.report_to = list(cfg.train.report_to)
        self.config = cfg.flat()
        self.every = cfg.train.weight_stats_steps
        self.has_eval = has_eval
        self.checks = HealthChecks()
        self.weights = WeightTracker()
        self.sinks: list[Sink] = []
        self.samples_seen = 0
        self.announced: set[str] = set()
        self.recorded: set[tuple[str, int]] = set()
        self.halted_step: int | None = None
        self.stats_step = -1
        self.start_step = 0
        self.step_started = 0.0
        self.window_time = 0.0
        self.window_tokens = 0

    def add_samples(self, count: int) -> None:
        """Called by the trainer with each batch's sample count (packed rows hold several)."""
        self.samples_seen += count

    def state(self) -> dict[str, Any]:
        """Saved in each checkpoint's trainer_state.json, read back when the run resumes."""
        return {
            "args": {},
            "attributes": {
                "samples_seen": self.samples_seen,
                "checks": self.checks.state(),
                "announced": sorted(self.announced),
            },
        }

    def _restore(self, state: TrainerState) -> None:
        stateful = state.stateful_callbacks
        saved = stateful.get(type(self).__name__) if isinstance(stateful, dict) else None
        if isinstance(saved, dict) and state.global_step > 0:
            attributes = saved.get("attributes", {})
            self.samples_seen = attributes.get("samples_seen", 0)
            self.checks = HealthChecks(**attributes.get("checks", {}))
            self.announced = set(attributes.get("announced", []))

    def on_train_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        self._restore(state)
        self.start_step = state.global_step  # weight change counts from here (0, or the resume)
        self.window_tokens = state.num_input_tokens_seen
        if not state.is_world_process_zero:
            return
        self.sinks = open_sinks(self.report_to, self.output_dir, self.config)
        if model is not None:
            self.weights.start(model)
            self._log_weights(state, model)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self.step_started = time.perf_counter()

    def on_pre_optimizer_step(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        """Drop an update whose gradients are NaN/inf, so no bad weight is ever stored.

        With fp16 the loss scaler skips such steps by design; there the logged loss decides.
        """
        if args.fp16 or model is None:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        if not grads:
            return
        device = grads[0].device
        norms = torch.stack(
            [torch.linalg.vector_norm(g, dtype=torch.float32).to(device) for g in grads]
        )
        if not torch.isfinite(norms.sum()):
            model.zero_grad(set_to_none=True)  # the optimizer skips parameters without grads
            self.halted_step = state.global_step + 1

    def on_step_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        self.window_time += time.perf_counter() - self.step_started
        if self.halted_step is not None:
            self._halt(state, control, self.halted_step)
            return
        if self.every and state.global_step % self.every == 0 and model is not None:
            self._log_weights(state, model)

    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not self.every and model is not None:
            self._log_weights(state, model)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not logs:
            return
        step = state.global_step
        alert = None
        if "loss" in logs:
            logs.update(self._window_metrics(state))
            if not all(math.isfinite(logs.get(key, 0.0)) for key in ("loss", "grad_norm")):
                self._halt(state, control, self.halted_step or step)
            alert = self.checks.train_log(step, logs)
            if not self.every and not self.has_eval and model is not None:
                self._log_weights(state, model)
        if "eval_loss" in logs and math.isfinite(logs["eval_loss"]):
            alert = self.checks.eval_log(step, logs["eval_loss"])
        self._write(
            {
                tag(k): v
                for k, v in logs.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            },
            step,
        )
        if alert:
            self._alert(state, alert)

    def on_train_end(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        model: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if model is not None and self.halted_step is None:
            self._log_weights(state, model)
        for sink in self.sinks:
            sink.close()
        self.sinks = []
        if self.plot_path is not None and state.is_world_process_zero:
            plot_loss(state.log_history, self.plot_path)

    def _window_metrics(self, state: TrainerState) -> dict[str, float]:
        """Tokens/s over the training time since the last log, samples seen, memory."""
        tokens = state.num_input_tokens_seen - self.window_tokens
        values = {"samples": float(self.samples_seen), **memory_in_use()}
        if self.window_time > 0:
            values["tokens_per_s"] = tokens / self.window_time
        self.window_time, self.window_tokens = 0.0, state.num_input_tokens_seen
        return values

    def _halt(self, state: TrainerState, control: TrainerControl, step: int) -> None:
        """Stop at once: no validation, no checkpoint of this step; say what is kept."""
        self.halted_step = step
        control.should_training_stop = True
        control.should_save = False
        control.should_evaluate = False
        control.should_log = True
        complete = complete_checkpoints(self.output_dir)
        self._alert(state, nonfinite_alert(step, str(complete[-1]) if complete else None))

    def _log_weights(self, state: TrainerState, model: torch.nn.Module) -> None:
        if not state.is_world_process_zero or state.global_step == self.stats_step:
            return
        self.stats_step = state.global_step
        stats: WeightStats = self.weights.measure(model)
        if not stats.totals:
            return
        scalars = {f"weights/{measure}": value for measure, value in stats.totals.items()}
        for measure, by_layer in stats.by_layer.items():
            scalars.update({f"weights/{measure}/{layer}": v for layer, v in by_layer.items()})
        self._write(scalars, state.global_step)
        for name, values in stats.histograms.items():
            for sink in self.sinks:
                sink.histogram(f"weights/{name}", values, state.global_step)
        self._append(
            state, state.global_step, {"weights": stats.totals, "weights_by_layer": stats.by_layer}
        )
        if "relative_change" in stats.totals and state.global_step > self.start_step:
            alert = self.checks.weight_change(state.global_step, stats.totals["relative_change"])
            if alert:
                self._alert(state, alert)

    def _append(self, state: TrainerState, step: int, values: dict[str, Any]) -> None:
        """A line of the run's JSONL log, with the same position fields as the others."""
        append_log(
            self.output_dir,
            {
                "step": step,
                "max_steps": state.max_steps,
                "epoch": state.epoch,
                "tokens": state.num_input_tokens_seen,
                **values,
            },
        )

    def _write(self, scalars: dict[str, float], step: int) -> None:
        for sink in self.sinks:
            sink.scalars(scalars, step)

    def _alert(self, state: TrainerState, alert: Alert) -> None:
        """Print the first alert of each kind; record every one (JSONL and the sinks)."""
        if (alert.kind, alert.step) in self.recorded or not state.is_world_process_zero:
            return
        self.recorded.add((alert.kind, alert.step))
        if alert.kind not in self.announced:
            self.announced.add(alert.kind)
            logger.warning("%s", alert.message)
        self._append(state, alert.step, {"alert": alert.kind, "message": alert.message})
        for sink in self.sinks:
            sink.text(f"alerts/{alert.kind}", alert.message, alert.step)


def training_observers(cfg: RunConfig, has_eval: bool) -> list[TrainerCallback]:
    """The monitoring of a run, as `tuneforge.train` passes it to the training stages."""
    return [TrainingMonitor(cfg, has_eval=has_eval)]
