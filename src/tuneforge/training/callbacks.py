"""What the user sees and keeps while training: a progress bar, a JSONL log, a clean Ctrl-C."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from tuneforge.layout import LOG_NAME

logger = logging.getLogger(__name__)

# Validation scores printed beside eval_loss when present (stage cls).
CLASSIFICATION_SCORES = (
    "eval_accuracy",
    "eval_macro_f1",
    "eval_baseline_accuracy",
    "eval_baseline_macro_f1",
)


class ProgressCallback(TrainerCallback):
    """One bar with ETA, loss, learning rate and useful (non-padding) tokens per second."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.postfix: dict[str, str] = {}
        self.start_time = 0.0
        self.start_tokens = 0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            self.bar = tqdm(
                total=state.max_steps,
                initial=state.global_step,
                desc="train",
                unit="step",
                dynamic_ncols=True,
            )
        self.start_time = time.perf_counter()
        self.start_tokens = state.num_input_tokens_seen

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.bar is None:
            return
        elapsed = time.perf_counter() - self.start_time
        tokens = state.num_input_tokens_seen - self.start_tokens
        if elapsed > 0:
            self.postfix["tok/s"] = f"{tokens / elapsed:.0f}"
        self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(state.global_step - self.bar.n)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if self.bar is None or not logs:
            return
        if "loss" in logs:
            self.postfix["loss"] = f"{logs['loss']:.4f}"
        if "learning_rate" in logs:
            self.postfix["lr"] = f"{logs['learning_rate']:.2e}"
        if "eval_loss" in logs:
            self.postfix["val"] = f"{logs['eval_loss']:.4f}"
            scores = "".join(
                f", {key[5:]} {logs[key]:.4f}" for key in CLASSIFICATION_SCORES if key in logs
            )  # stage cls: the model's and the baseline's
            self.bar.write(f"step {state.global_step}: eval_loss {logs['eval_loss']:.4f}{scores}")

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class JsonlLogCallback(TrainerCallback):
    """Append every log entry to ``trainer_log.jsonl``: machine-readable, survives a crash."""

    def __init__(self, output_dir: str | Path) -> None:
        self.path = Path(output_dir) / LOG_NAME
        self.start = time.time()

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero and state.global_step > 0:
            truncate_log(self.path, state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, float] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        entry = {
            "step": state.global_step,
            "max_steps": state.max_steps,
            "epoch": state.epoch,
            "tokens": state.num_input_tokens_seen,
            "elapsed_s": round(time.time() - self.start, 2),
            **logs,
        }
        append_log(self.path.parent, entry)


def append_log(output_dir: str | Path, entry: dict[str, Any]) -> None:
    """Add one line to the run's ``trainer_log.jsonl`` (the monitor adds weight and alert lines)."""
    path = Path(output_dir) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, ensure_ascii=False) + "\n")


def truncate_log(path: Path, step: int) -> None:
    """Drop the log lines after `step`: a resumed run logs those steps again, and each step
    must stand in the log once. The file is replaced atomically."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line torn by the crash that made this run resume
        if not isinstance(entry, dict) or int(entry.get("step", 0)) <= step:
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)


class InterruptCallback(TrainerCallback):
    """First Ctrl-C: save a checkpoint and stop after the current step. Second: stop now."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        if self.requested:
            signal.signal(signal.SIGINT, self._previous)
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("Interrupted: saving a checkpoint after this step (Ctrl-C again to abort)")

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
