"""Several training processes (data parallel): inside them, and what only rank 0 does.

`tuneforge.training.launch` starts the processes (``--nproc N``, several machines) through
torch's launcher (``torchrun``), which sets RANK / WORLD_SIZE / LOCAL_RANK; a run started by
``torchrun`` or ``accelerate launch`` directly is the same. The Trainer (through accelerate)
then joins the processes with gloo on CPUs and NCCL on GPUs, shards every batch and averages
the gradients. Rank 0 alone prints, logs and writes files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from tuneforge.config.schema import TrainArgs
from tuneforge.errors import UserError


def world_size() -> int:
    """How many training processes this run has (1 unless started by a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True in rank 0, the process that prints and writes; always true in a single process."""
    return os.environ.get("RANK", "0") == "0"


def quiet_other_ranks() -> None:
    """In ranks other than 0: no progress bars or Python warnings, which rank 0 shows once."""
    if is_main_process():
        return
    import warnings

    import datasets
    from transformers.utils import logging as hf_logging

    warnings.simplefilter("ignore")
    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


def device_slots() -> tuple[int, str]:
    """How many processes this machine can run: one per GPU, else one per usable CPU core."""
    import torch

    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        return count, f"{count} CUDA GPU{'s' if count != 1 else ''}"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    count = cores or 1
    return count, f"{count} usable CPU core{'s' if count != 1 else ''} and no GPU"


class OtherProcessFailed(UserError):
    """Raised in the waiting processes when rank 0 failed first; rank 0 has said why."""


@contextmanager
def main_process_first(timeout_s: int) -> Iterator[None]:
    """Rank 0 runs the block first (it fills caches), then the others, unless it failed.

    Joins the process group early (the Trainer reuses it). When rank 0 fails (bad data, say),
    the others stop with `OtherProcessFailed` instead of waiting for it until the timeout.
    """
    if world_size() == 1:
        yield
        return
    import torch
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s))
    if state.is_main_process:
        try:
            yield
        except BaseException as exc:
            _tell_others(exc.exit_code if isinstance(exc, UserError) else 1)
            raise
        _tell_others(0)
    else:
        code = _tell_others(None)
        if code:
            failed = OtherProcessFailed("stopped: the first training process failed")
            failed.exit_code = code  # whichever process exits first, the code is rank 0's
            raise failed
        yield


def _tell_others(code: int | None) -> int:
    """Rank 0 sends its block's exit code (0: it succeeded); every rank returns it."""
    import torch.distributed as dist

    outcome = [code]
    dist.broadcast_object_list(outcome, src=0)
    return int(outcome[0] or 0)


def effective_batch(train_args: TrainArgs, processes: int) -> int:
    """Rows per optimizer step: per device x accumulation x processes."""
    return (
        train_args.per_device_train_batch_size * train_args.gradient_accumulation_steps * processes
    )


def batch_advice(train_args: TrainArgs, processes: int) -> str:
    """What the batch is per step and, with several processes, what that means for the LR."""
    rows = effective_batch(train_args, processes)
    line = (
        f"Effective batch: {train_args.per_device_train_batch_size} per process x "
        f"{train_args.gradient_accumulation_steps} accumulation x {processes} "
        f"process{'es' if processes != 1 else ''} = {rows} rows per optimizer step"
    )
    if processes > 1:
        line += (
            f"; that is {processes}x the batch of one process, so each epoch has "
            f"{processes}x fewer steps. learning_rate={train_args.learning_rate:g} was "
            f"probably tuned for one process: the usual rules scale it by {processes} "
            f"(linear, SGD-like) or {math.sqrt(processes):.2f} (square root, Adam)"
        )
    return line
