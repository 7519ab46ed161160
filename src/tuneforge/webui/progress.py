"""How far a run is, read from its ``trainer_log.jsonl``: step, ETA and the loss curves.

The log is what the training callbacks append at every logging step, read with the same
reader as ``tuneforge report``; a resumed run appends to it and its ``elapsed_s`` starts again
at 0, so the speed for the ETA is taken from the entries of the current process only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.layout import LOG_NAME
from tuneforge.monitor.runlog import Point, read_run

CURVES = ("loss", "eval_loss")


@dataclass(frozen=True)
class Progress:
    step: int
    max_steps: int | None
    eta_s: float | None
    curves: dict[str, list[Point]]
    last: dict[str, Any]

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0


def read_progress(output_dir: str | Path, since: float = 0.0) -> Progress | None:
    """The run's progress, or None while it has logged nothing (after `since`, a time stamp:
    an older log belongs to a run this one is about to replace)."""
    log = Path(output_dir) / LOG_NAME
    if not log.is_file() or log.stat().st_mtime < since:
        return None
    run = read_run(output_dir)
    timed = [entry for entry in run.entries if "elapsed_s" in entry]
    if not timed:
        return None
    curves = {key: sorted(dict(run.series(key)).items()) for key in CURVES}
    return Progress(
        step=run.last_step,
        max_steps=run.max_steps,
        eta_s=eta_seconds(timed),
        curves=curves,
        last=timed[-1],
    )


def eta_seconds(entries: Sequence[dict[str, Any]]) -> float | None:
    """Seconds left at the speed of the current process (the entries since ``elapsed_s``
    last went back to 0); None until two of its entries are a step apart."""
    start = len(entries) - 1
    while start > 0 and entries[start - 1]["elapsed_s"] <= entries[start]["elapsed_s"]:
        start -= 1
    first, last = entries[start], entries[-1]
    steps = int(last["step"]) - int(first["step"])
    seconds = float(last["elapsed_s"]) - float(first["elapsed_s"])
    total = last.get("max_steps")
    if steps <= 0 or seconds <= 0 or not total:
        return None
    return max(0, int(total) - int(last["step"])) * seconds / steps


def format_duration(seconds: float) -> str:
    """``1h 02m``, ``3m 05s`` or ``42s``."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
