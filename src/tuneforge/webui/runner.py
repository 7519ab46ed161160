"""One training job per server: ``tuneforge train`` in a subprocess, stopped like Ctrl-C.

The job's config is written into a job folder of its own (one per output folder, under the
cache: ``$TUNEFORGE_CACHE/webui-jobs``) and run by the CLI, so training goes on when the
browser tab closes and the same run can be repeated from a terminal. The job folder is
outside the run's ``output_dir``: the run refuses a folder holding files it did not write,
and ``overwrite_output_dir`` could not delete the YAML the page shows as the command. The
console output goes to a file in the job folder, which the page tails. Stop sends SIGINT
once: the training callbacks then save a checkpoint after the current step and end the run,
which exits 130 (interrupted).
"""

from __future__ import annotations

import hashlib
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
from tuneforge.models.default import cache_root
from tuneforge.training.checkpoint import check_output_dir
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

    def __init__(self, python: str = sys.executable, jobs_dir: Path | None = None) -> None:
        self.python = python
        self.jobs_dir = jobs_dir or cache_root() / "webui-jobs"
        self.job: Job | None = None
        self.output_dirs: list[Path] = []  # every run this server started, for the run pickers
        self._lock = threading.Lock()

    def config_path(self, output_dir: str | Path) -> Path:
        """Where the job for `output_dir` keeps its YAML: the same file every time, so the
        command the page shows before Start is the one Start runs."""
        out = Path(output_dir).resolve()
        digest = hashlib.sha1(str(out).encode()).hexdigest()[:10]
        return self.jobs_dir / f"{out.name}-{digest}" / CONFIG_FILE

    def start(self, config: Mapping[str, Any], *, resume: bool = False) -> Job:
        """Validate `config`, write it into its job folder and run ``tuneforge train`` on it;
        `resume` continues from the last complete checkpoint in its output folder."""
        values = {**config, "resume_from_checkpoint": True} if resume else dict(config)
        cfg = load_config(values)
        with self._lock:
            if self.job is not None and self.job.running:
                raise JobRunning(
                    f"a training job is already running in {self.job.output_dir} "
                    f"(pid {self.job.process.pid}); stop it or wait for it to end "
                    f"before starting another"
                )
            check_output_dir(cfg.train, cfg.data)
            out = Path(cfg.train.output_dir)
            config_path = self.config_path(out)
            config_path.parent.mkdir(parents=True, exist_ok=True)
            config_path.write_text(config_yaml(values), encoding="utf-8")
            console_path = config_path.parent / CONSOLE_FILE
            with console_path.open("wb") as sink:
                console = console_path.open("rb")
                process = subprocess.Popen(
                    [self.python, "-m", "tuneforge.cli", "train", str(config_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
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
