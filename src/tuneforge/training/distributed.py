"""Several training processes (data parallel): launching them, and what only rank 0 does.

``tuneforge train my.yaml --nproc N`` validates the config once, then starts N copies of the
same command through torch's launcher (``torchrun``), which sets RANK / WORLD_SIZE /
LOCAL_RANK; a run started by ``torchrun`` or ``accelerate launch`` directly is the same. The
Trainer (through accelerate) then joins the processes with gloo on CPUs and NCCL on GPUs,
shards every batch and averages the gradients. Rank 0 alone prints, logs and writes files.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from tuneforge.config.environment import check_environment
from tuneforge.config.schema import RunConfig, TrainArgs
from tuneforge.errors import ConfigError, UserError
from tuneforge.training.checkpoint import check_output_dir

logger = logging.getLogger(__name__)


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


def check_nproc(nproc: int) -> None:
    """Refuse a process count the machine cannot run, or a second launcher around a launcher."""
    if nproc < 1:
        raise ConfigError(f"--nproc {nproc}: give a number of processes of 1 or more")
    if nproc > 1 and world_size() > 1:
        raise ConfigError(
            f"--nproc {nproc}: this command was already started by a launcher "
            f"with {world_size()} processes; drop --nproc"
        )
    slots, described = device_slots()
    if nproc > slots:
        raise ConfigError(
            f"--nproc {nproc}: this machine has {described}; use --nproc {slots} or fewer"
        )


def launch_training(cfg: RunConfig, nproc: int, argv: Sequence[str]) -> int:
    """Run ``tuneforge <argv>`` (a train command) in `nproc` processes; their exit status.

    What can be refused is refused here, once, before N processes load a model each. On a
    CPU each process gets an equal share of the cores as its thread count, so N processes
    do not each start one thread per core and fight over them. When a process fails, its
    own one-line error is what the user sees, not the launcher's report about it.
    """
    import torch
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    check_nproc(nproc)
    check_environment(cfg)
    check_output_dir(cfg.train)
    gpu = torch.cuda.is_available()
    if not gpu and "OMP_NUM_THREADS" not in os.environ:  # passed down to the processes
        os.environ["OMP_NUM_THREADS"] = str(max(1, device_slots()[0] // nproc))
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    logger.info(
        "Starting %d training processes (%s)", nproc, "NCCL on GPUs" if gpu else "gloo on CPU cores"
    )
    try:
        run(parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "tuneforge.cli", *argv]))
    except ChildFailedError as exc:
        return _exit_code(exc)
    return 0


def _exit_code(exc: Any) -> int:
    """The exit code of the first process that exited by itself: processes the launcher
    killed once another had failed (a negative code, a signal) may be recorded first. Those
    stopped by `OtherProcessFailed` exit with the failing process's code."""
    failures = sorted(exc.failures.values(), key=lambda failure: failure.timestamp)
    own = [f for f in failures if f.exitcode > 0]
    return own[0].exitcode if own else 1


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
