"""How many CPU threads a training run uses, chosen at the start and said in the log.

torch's OpenMP threads spin-wait at the end of every parallel region. On a quiet machine that
is the fastest choice (passive waiting cost 30% here, a shorter spin 15-20%: see
docs/benchmarks.md), but when another process holds one of the cores, a thread whose partner
was descheduled spins away its time slice and a run crawls (10x slower measured on two cores).
So a CPU run takes one thread per core that no other process is running on, never fewer than
one; ``OMP_NUM_THREADS`` set by the user wins.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping

import torch

logger = logging.getLogger(__name__)

SAMPLES = 5  # reads of the run queue, SAMPLE_S apart: one read catches a passing blip
SAMPLE_S = 0.1


def running_elsewhere(read: Callable[[], str] | None = None) -> int:
    """Processes running on the CPUs besides this one, the least of a few reads of
    /proc/loadavg's run queue (which counts this process too)."""
    reader = read or (lambda: open("/proc/loadavg", encoding="ascii").read())
    counts = []
    for i in range(SAMPLES):
        if i:
            time.sleep(SAMPLE_S)
        try:
            counts.append(int(reader().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return 0
    return max(0, min(counts))


def choose_threads(cores: int, busy: int, environ: Mapping[str, str]) -> tuple[int | None, str]:
    """(threads to set, or None to leave torch's choice; the log line)."""
    if environ.get("OMP_NUM_THREADS"):
        return None, f"Threads: {torch.get_num_threads()} (OMP_NUM_THREADS)"
    threads = max(1, cores - busy)
    if busy == 0:
        return threads, f"Threads: {threads}, one per core (no other process running)"
    return threads, (
        f"Threads: {threads} of {cores} cores: {busy} other process(es) running; a thread per "
        "core would spin-wait on a busy one (OMP_NUM_THREADS to choose)"
    )


def set_cpu_threads(environ: Mapping[str, str] = os.environ) -> None:
    """Set torch's thread count for a CPU run and log why; GPU runs are left alone."""
    if torch.cuda.is_available():
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads, line = choose_threads(cores or 1, running_elsewhere(), environ)
    if threads is not None:
        torch.set_num_threads(threads)
    logger.info(line)
