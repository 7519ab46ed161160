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
import re
import shutil
from pathlib import Path

from tuneforge.config.schema import TrainArgs
from tuneforge.errors import OutputError

logger = logging.getLogger(__name__)

MARKER = "tuneforge_complete.json"
CONFIG_NAME = "tuneforge_config.yaml"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# Files whose presence means a finished run lives in the folder.
_RUN_FILES = ("adapter_config.json", "model.safetensors", "model.safetensors.index.json", CONFIG_NAME)


def data_fingerprint(lengths: list[int]) -> str:
    """A short fingerprint of the training rows (their token counts, in order)."""
    digest = hashlib.sha1(",".join(map(str, lengths)).encode()).hexdigest()
    return f"{len(lengths)}:{digest[:16]}"


def mark_complete(folder: Path, *, step: int, fingerprint: str, processes: int = 1) -> None:
    """Flush every file of a finished checkpoint, then write its marker atomically.

    The marker records the training data and the number of processes: resuming with either
    changed would restart from the wrong sample.
    """
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"step": step, "data": fingerprint, "processes": processes}),
                   encoding="utf-8")
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, folder / MARKER)


def checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """All checkpoint folders (complete or not), oldest first."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir()
             if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return sorted(found)


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def rotate(output_dir: Path, limit: int | None, keep: Path | None) -> None:
    """Delete the oldest complete checkpoints beyond `limit`, never `keep` (the best one)."""
    if not limit:
        return
    complete = [p for _, p in checkpoints(output_dir) if is_complete(p)]
    removable = [p for p in complete if keep is None or p.resolve() != keep.resolve()]
    excess = len(complete) - limit
    for path in removable[: max(0, excess)]:
        shutil.rmtree(path, ignore_errors=True)


def check_output_dir(args: TrainArgs) -> None:
    """Refuse to write over a run the user has not asked to replace or resume."""
    out = Path(args.output_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"output_dir '{out}' is a file, not a folder")
    if args.resume_from_checkpoint or args.overwrite_output_dir or not out.is_dir():
        return
    if any((out / name).exists() for name in _RUN_FILES) or checkpoints(out):
        raise OutputError(
            f"output_dir '{out}' already holds a run; set overwrite_output_dir: true to replace "
            f"it, resume_from_checkpoint: true to continue it, or choose another output_dir"
        )


def clear_output_dir(args: TrainArgs) -> None:
    """With overwrite_output_dir, remove the previous run so its checkpoints cannot mix in."""
    out = Path(args.output_dir)
    if args.overwrite_output_dir and not args.resume_from_checkpoint and out.is_dir():
        logger.info("overwrite_output_dir: removing the previous run in %s", out)
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def resolve_resume(args: TrainArgs, fingerprint: str, *, processes: int = 1) -> str | None:
    """The checkpoint to resume from, checked for completeness, the same data and the same
    number of processes."""
    wanted = args.resume_from_checkpoint
    if not wanted:
        return None
    out = Path(args.output_dir)
    if wanted is True:
        complete = [p for _, p in checkpoints(out) if is_complete(p)]
        for _, partial in checkpoints(out):
            if not is_complete(partial):
                logger.warning("Ignoring %s: it was not written completely", partial)
        if not complete:
            raise OutputError(f"resume_from_checkpoint: no complete checkpoint in '{out}'")
        folder = complete[-1]
    else:
        folder = Path(str(wanted))
        if not folder.is_dir():
            raise OutputError(f"resume_from_checkpoint: '{folder}' is not a folder")
        if not is_complete(folder):
            raise OutputError(f"resume_from_checkpoint: '{folder}' is not a complete tuneforge "
                              f"checkpoint (no {MARKER})")
    saved = json.loads((folder / MARKER).read_text(encoding="utf-8"))
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
    return str(folder)
