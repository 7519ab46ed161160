"""The thread count follows the cores no other process is running on."""

from __future__ import annotations

import torch

from tuneforge.training.threads import choose_threads, running_elsewhere


def test_one_thread_per_free_core():
    assert choose_threads(2, 0, {})[0] == 2
    threads, line = choose_threads(2, 1, {})
    assert threads == 1 and "1 other process" in line
    assert choose_threads(2, 5, {})[0] == 1  # never fewer than one
    assert choose_threads(16, 3, {})[0] == 13


def test_the_users_setting_wins():
    threads, line = choose_threads(2, 1, {"OMP_NUM_THREADS": "2"})
    assert threads is None and f"Threads: {torch.get_num_threads()} (OMP_NUM_THREADS)" == line


def test_run_queue_read_without_this_process_and_least_of_the_reads():
    reads = iter(["0.5 0.4 0.3 3/200 99", "0.5 0.4 0.3 2/200 99"] + ["0.5 0.4 0.3 4/200 99"] * 3)
    assert running_elsewhere(lambda: next(reads)) == 1
    assert running_elsewhere(lambda: "0.1 0.1 0.1 1/150 7") == 0
    assert running_elsewhere(lambda: "garbled") == 0
