"""What the pickers offer: models, runs, registered datasets and their first samples.

Each list comes from the library (aliases, the dataset registry, the row readers, the run
reader), so the page shows exactly what ``tuneforge train`` would find.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tuneforge.config import load_config
from tuneforge.data import registry
from tuneforge.data.prepare import read_dataset
from tuneforge.errors import UserError
from tuneforge.infer.resolve import resolve_model
from tuneforge.models import ALIASES
from tuneforge.monitor.runlog import is_run

# Where local models and runs are looked for, relative to the folder the server runs in.
MODEL_ROOTS = ("models", "saves")
RUN_ROOTS = ("saves",)
PREVIEW_ROWS = 5


def model_choices(roots: Iterable[str | Path] = MODEL_ROOTS) -> list[str]:
    """Built-in aliases first, then local Hugging Face model folders (config.json) found one
    level below `roots`: downloaded models, full fine-tunes and merged exports."""
    found = [
        str(folder)
        for root in roots
        for folder in _subfolders(Path(root))
        if (folder / "config.json").is_file()
    ]
    return [*ALIASES, *found]


def run_choices(
    extra: Iterable[str | Path] = (), roots: Iterable[str | Path] = RUN_ROOTS
) -> list[str]:
    """Training output folders: those in `extra` (the runs this server started) and those one
    or two levels below `roots`, newest first."""
    candidates = [Path(path) for path in extra]
    for root in map(Path, roots):
        for folder in _subfolders(root):
            candidates += [folder, *_subfolders(folder)]
    runs = {str(path): path for path in candidates if is_run(path)}
    return sorted(runs, key=lambda name: runs[name].stat().st_mtime, reverse=True)


def reward_model_choices(
    extra: Iterable[str | Path] = (), roots: Iterable[str | Path] = RUN_ROOTS
) -> list[str]:
    """The runs of `run_choices` that trained a reward model (stage rm) and can load: what a
    preference evaluation may score answers with."""
    return [run for run in run_choices(extra, roots) if _stage(run) == "rm"]


def _stage(run: str) -> str | None:
    try:
        return resolve_model(run).config.finetune.stage
    except UserError:
        return None


def _subfolders(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def dataset_names(dataset_dir: str) -> list[str]:
    """The names ``<dataset_dir>/dataset_info.json`` registers; `DataError` when it is missing
    or broken."""
    return registry.registered(dataset_dir)


def preview_rows(
    dataset_dir: str, names: Sequence[str], stage: str, count: int = PREVIEW_ROWS
) -> tuple[list[str], list[list[str]]]:
    """(columns, rows): the first `count` samples of each dataset as training reads them
    (conversations as ``role: text`` lines), so format problems show before a run starts."""
    cfg = load_config(
        {
            "dataset": list(names),
            "dataset_dir": dataset_dir,
            "stage": stage,
            "max_samples": count,
            "do_train": False,
        }
    )
    columns: list[str] = []
    rows: list[list[str]] = []
    for spec in registry.resolve(list(names), dataset_dir):
        samples, _ = read_dataset(spec, cfg, None)
        shown = [name for name in samples.column_names if name != "tools"]
        columns = columns or ["dataset", *shown]
        rows += [[spec.name, *(_cell(sample[name]) for name in shown)] for sample in samples]
    return columns, rows


def _cell(value: Any) -> str:
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return "\n".join(f"{item.get('role')}: {item.get('content')}" for item in value)
    return "" if value is None else str(value)
