"""One training job per server: ``tuneforge train`` in a subprocess, stopped like Ctrl-C.

The job's config is written into its output folder and run by the CLI, so training goes on
when the browser tab closes and the same run can be repeated from a terminal. Its console
output goes to a file beside the run, which the page tails; the file is read through a handle
opened before the job starts, so it stays readable even when the run clears its folder
(``overwrite_output_dir``). Stop sends SIGINT once: the training callbacks then save a
checkpoint after the current step and end the run cleanly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tuneforge.config import load_config
from tuneforge.errors import UserError
from tuneforge.train.checkpoint import check_output_dir
from tuneforge.webui.form import config_yaml

CONFIG_FILE = "webui_train.yaml"
CONSOLE_FILE = "webui_console.log"
# How much of the console output is kept for the page (tqdm rewrites its line often).
CONSOLE_TAIL_BYTES = 64_000


class JobRunning(UserError):
    """Start was pressed while this server's training job is still running."""


@dataclass
class Job:
    """A started training subprocess and what the page needs to follow it."""

    output_dir: Path
    config_path: Path
    process: subprocess.Popen[bytes]
    console: IO[bytes]
    started: float
    resumed: bool
    stop_requested: bool = False
    _tail: bytes = field(default=b"", repr=False)
    _reading: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    @property
    def state(self) -> str:
        """running, stopping, finished, stopped or failed."""
        code = self.process.poll()
        if code is None:
            return "stopping" if self.stop_requested else "running"
        if self.stop_requested:
            return "stopped"
        return "finished" if code == 0 else "failed"

    def console_lines(self, count: int = 20) -> list[str]:
        """The last `count` lines the job printed (a progress bar's redraws count once)."""
        with self._reading:  # every open page polls the same job
            self._tail = (self._tail + self.console.read())[-CONSOLE_TAIL_BYTES:]
            text = self._tail.decode("utf-8", errors="replace")
        lines = [line.split("\r")[-1].rstrip() for line in text.replace("\r\n", "\n").split("\n")]
        return [line for line in lines if line][-count:]


class TrainingRunner:
    """Starts, stops and remembers the server's one training job."""

    def __init__(self, python: str = sys.executable) -> None:
        self.python = python
        self.job: Job | None = None
        self.output_dirs: list[Path] = []  # every run this server started, for the run pickers
        self._lock = threading.Lock()

    def start(self, config: Mapping[str, Any], *, resume: bool = False) -> Job:
        """Validate `config`, write it into its output folder and run ``tuneforge train`` on
        it; `resume` continues from the last complete checkpoint there."""
        values = {**config, "resume_from_checkpoint": True} if resume else dict(config)
        cfg = load_config(values)
        with self._lock:
            if self.job is not None and self.job.running:
                raise JobRunning(f"a training job is already running in {self.job.output_dir} "
                                 f"(pid {self.job.process.pid}); stop it or wait for it to end "
                                 f"before starting another")
            check_output_dir(cfg.train)
            out = Path(cfg.train.output_dir)
            out.mkdir(parents=True, exist_ok=True)
            config_path = out / CONFIG_FILE
            config_path.write_text(config_yaml(values), encoding="utf-8")
            console_path = out / CONSOLE_FILE
            with console_path.open("wb") as sink:
                console = console_path.open("rb")
                process = subprocess.Popen(
                    [self.python, "-m", "tuneforge.cli", "train", str(config_path)],
                    stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
            if self.job is not None:
                self.job.console.close()
            self.job = Job(out, config_path, process, console, time.time(), resume)
            self.output_dirs = [out, *(path for path in self.output_dirs if path != out)]
            return self.job

    def stop(self) -> bool:
        """Ask the running job to save a checkpoint and stop; False when none runs. Asking
        twice does not abort it (a second SIGINT would stop without a checkpoint)."""
        with self._lock:
            job = self.job
            if job is None or not job.running:
                return False
            if not job.stop_requested:
                job.stop_requested = True
                job.process.send_signal(signal.SIGINT)
            return True
