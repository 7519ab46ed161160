"""Checkpoints that are complete or visibly not, and what "resume" restores.

transformers writes a checkpoint folder file by file; a crash half-way leaves a folder that
looks like any other. tuneforge marks a checkpoint complete only after every file in it is
flushed to disk, by atomically writing a small marker that also records which training data
the run saw. Resume considers marked checkpoints only, and refuses one made on other data.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tuneforge import layout
from tuneforge.config.schema import DataArgs, TrainArgs
from tuneforge.errors import OutputError

logger = logging.getLogger(__name__)

# How many of the user's own entries an error message names before "and N more".
_LISTED = 8


@dataclass(frozen=True)
class Resume:
    """A checkpoint to resume from and the optimizer step its marker records."""

    path: Path
    step: int


def data_fingerprint(lengths: list[int]) -> str:
    """A short fingerprint of the training rows (their token counts, in order)."""
    digest = hashlib.sha1(",".join(map(str, lengths)).encode()).hexdigest()
    return f"{len(lengths)}:{digest[:16]}"


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def unmark(folder: Path) -> None:
    """Remove a checkpoint's marker, durably, before any of its files is written again: a
    crash while it is rewritten must leave a checkpoint that resume skips, not one whose
    files are half new and half old under an old "complete" marker."""
    marker = folder / layout.MARKER
    if marker.exists():
        marker.unlink()
        _fsync_dir(folder)


def mark_complete(folder: Path, *, step: int, fingerprint: str, processes: int = 1) -> None:
    """Flush every file of a finished checkpoint, then write its marker atomically.

    The marker records the step, the training data and the number of processes: resuming
    with the data or the processes changed would restart from the wrong sample.
    """
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    tmp = folder / (layout.MARKER + ".tmp")
    tmp.write_text(
        json.dumps({"step": step, "data": fingerprint, "processes": processes}), encoding="utf-8"
    )
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, folder / layout.MARKER)
    _fsync_dir(folder)


def rotate(output_dir: Path, limit: int | None, keep: Path | None) -> None:
    """Delete the oldest complete checkpoints beyond `limit`, never `keep` (the best one)."""
    if not limit:
        return
    complete = layout.complete_checkpoints(output_dir)
    removable = [p for p in complete if keep is None or p.resolve() != keep.resolve()]
    excess = len(complete) - limit
    for path in removable[: max(0, excess)]:
        shutil.rmtree(path, ignore_errors=True)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def _creatable(out: Path) -> str | None:
    """Why `out` cannot be created (or written), or None.

    A folder that exists is asked directly. Otherwise a temporary folder is made and removed
    in the nearest existing one, whose times are then put back: `os.access` says yes to root
    even where nothing can be created (``/proc``), and the probe must leave no trace.
    """
    if out.is_dir():
        return None if os.access(out, os.W_OK | os.X_OK) else f"'{out}' is not writable"
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"'{parent}' is a file, not a folder"
    before = parent.stat()
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tuneforge-probe-", dir=parent))
    except OSError as exc:
        return f"'{parent}' is not writable ({exc.strerror or exc})"
    os.utime(parent, ns=(before.st_atime_ns, before.st_mtime_ns))
    return None


def check_output_dir(args: TrainArgs, data: DataArgs | None = None) -> None:
    """Refuse, before anything is loaded or written, an output_dir that a run could not
    write to, or whose contents a run could damage.

    A run may write into a new folder, an empty one, or a folder holding a run (to resume it,
    or with overwrite_output_dir to replace it, which deletes only what a run writes: see
    `tuneforge.layout`). The current folder, a folder holding the dataset, a folder with
    anything else in it, and a run folder that also holds the user's own files are refused.
    """
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output_dir '{out}' is a file, not a folder")
    resume_folder(args)
    problem = _creatable(out)
    if problem:
        raise OutputError(
            f"output_dir '{out}' cannot be created: {problem}; choose another output_dir"
        )
    target = out.resolve()
    if target == Path.cwd().resolve():
        raise OutputError(
            f"output_dir '{out}' is the current folder; name a new folder for "
            f"the run, e.g. output_dir: saves/my-run"
        )
    if data is not None and target in (
        Path(data.dataset_dir).resolve(),
        *Path(data.dataset_dir).resolve().parents,
    ):
        raise OutputError(
            f"output_dir '{out}' holds the dataset folder '{data.dataset_dir}'; "
            f"name a new folder for the run, e.g. output_dir: saves/my-run"
        )
    if not out.is_dir() or not any(out.iterdir()):
        return
    foreign = layout.foreign_entries(out)
    if not layout.is_run_folder(out):
        raise OutputError(
            f"output_dir '{out}' is not empty and holds no tuneforge run "
            f"({_listing(foreign)}); name a new folder for the run"
        )
    if args.resume_from_checkpoint:
        return
    if not args.overwrite_output_dir:
        raise OutputError(
            f"output_dir '{out}' already holds a run; set overwrite_output_dir: true to replace "
            f"it, resume_from_checkpoint: true to continue it, or choose another output_dir"
        )
    if foreign:
        raise OutputError(
            f"output_dir '{out}' holds files that are not a run's "
            f"({_listing(foreign)}); overwrite_output_dir deletes only a run's own "
            f"files: move them, or name a new folder"
        )


def clear_output_dir(args: TrainArgs) -> None:
    """With overwrite_output_dir, remove the previous run's files (and nothing else) so its
    checkpoints and logs cannot mix into the new run."""
    out = Path(args.output_dir)
    if args.overwrite_output_dir and not args.resume_from_checkpoint and out.is_dir():
        logger.info("overwrite_output_dir: removing the previous run's files in %s", out)
        for child in out.iterdir():
            if layout.is_run_entry(child):
                shutil.rmtree(child) if child.is_dir() else child.unlink()


def _read_marker(folder: Path) -> dict:
    try:
        saved = json.loads((folder / layout.MARKER).read_text(encoding="utf-8"))
        int(saved["step"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(
            f"resume_from_checkpoint: '{folder / layout.MARKER}' cannot be read "
            f"({exc}); resume from another checkpoint"
        ) from None
    return saved


def resume_folder(args: TrainArgs, *, warn: bool = False) -> Path | None:
    """The complete checkpoint that resume_from_checkpoint names (the last one in output_dir
    for ``true``), or None when the run does not resume. Reads no data: `check_output_dir`
    calls it before anything is loaded, `resolve_resume` again with the data in hand."""
    wanted = args.resume_from_checkpoint
    if not wanted:
        return None
    if wanted is not True:
        folder = Path(str(wanted))
        if not folder.is_dir():
            raise OutputError(f"resume_from_checkpoint: '{folder}' is not a folder")
        if not layout.is_complete(folder):
            raise OutputError(
                f"resume_from_checkpoint: '{folder}' is not a complete tuneforge "
                f"checkpoint (no {layout.MARKER})"
            )
        return folder
    out = Path(args.output_dir)
    if warn:
        for _, partial in layout.checkpoints(out):
            if not layout.is_complete(partial):
                logger.warning("Ignoring %s: it was not written completely", partial)
    complete = layout.complete_checkpoints(out)
    if not complete:
        raise OutputError(f"resume_from_checkpoint: no complete checkpoint in '{out}'")
    return complete[-1]


def resolve_resume(args: TrainArgs, fingerprint: str, *, processes: int = 1) -> Resume | None:
    """The checkpoint to resume from, checked for completeness, the same data and the same
    number of processes; its step is the one its marker records, whatever the folder's name."""
    folder = resume_folder(args, warn=True)
    if folder is None:
        return None
    saved = _read_marker(folder)
    if saved.get("data") != fingerprint:
        raise OutputError(
            f"resume_from_checkpoint: '{folder}' was trained on other data "
            f"({saved.get('data')} rows:hash, now {fingerprint}); resuming would skip the wrong "
            f"samples. Use the same dataset/cutoff_len, or start a new run with "
            f"adapter_name_or_path to continue from its weights"
        )
    saved_processes = saved.get("processes", 1)
    if saved_processes != processes:
        raise OutputError(
            f"resume_from_checkpoint: '{folder}' was written by a run of {saved_processes} "
            f"process(es) and this run has {processes}; the data position and random state "
            f"belong to {saved_processes}. Resume with --nproc {saved_processes}"
        )
    return Resume(folder, int(saved["step"]))
