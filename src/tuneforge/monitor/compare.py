"""``tuneforge compare``: several runs on one page, curves on shared axes, best values marked.

Runs are compared when they train the same kind of task: a classifier's loss or an sft run's
BLEU say nothing about a pre-training run. Runs of another stage than most are left out, and
the page says which and why. A folder holding runs (a sweep) stands for all of them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneforge.errors import OutputError
from tuneforge.monitor.plots import run_colors
from tuneforge.monitor.report import charts, page, series_panels
from tuneforge.monitor.runlog import Run, is_run, read_run

COMPARE_NAME = "compare.html"
# Keys that always differ between runs or say nothing about how a run was trained.
_IDENTITY_KEYS = {"output_dir", "overwrite_output_dir", "resume_from_checkpoint"}
_LOWER_IS_BETTER = ("loss", "perplexity", "ppl", "runtime", "memory")
_HIGHER_IS_BETTER = (
    "accuracy",
    "f1",
    "bleu",
    "rouge",
    "exact",
    "match",
    "kept",
    "tokens_per_s",
    "score",
    "precision",
    "recall",
)


def write_comparison(paths: Sequence[str | Path], output: str | Path | None = None) -> Path:
    """Write the comparison page (default: ``compare.html`` in the runs' common folder)."""
    runs = collect_runs(paths)
    stage, kept, left_out = comparable(runs)
    names = unique_names(kept)
    metrics = {name: run.summary() for name, run in zip(names, kept, strict=True)}
    columns = list(dict.fromkeys(key for summary in metrics.values() for key in summary))
    out = (
        Path(output)
        if output
        else Path(os.path.commonpath([r.path.resolve() for r in runs])) / COMPARE_NAME
    )
    html = page(
        "compare.html.j2",
        runs=kept,
        names=names,
        stage=stage,
        left_out=left_out,
        colors=run_colors(len(kept)),
        columns=columns,
        metrics=metrics,
        best=best_values(metrics, columns),
        diff=config_diff(kept),
        charts=charts(series_panels(kept), out.parent / f"{out.stem}_plots"),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out


def collect_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Each path a run, or a folder of runs (a sweep); every run once, in the order given."""
    folders: list[Path] = []
    for given in paths:
        path = Path(given)
        inside = sorted(p for p in path.iterdir() if is_run(p)) if path.is_dir() else []
        folders.extend(inside if inside and not is_run(path) else [path])
    unique = list(dict.fromkeys(p.resolve() for p in folders))
    runs = [read_run(p) for p in unique]
    if len(runs) < 2:
        raise OutputError(
            f"compare needs at least two runs; found {len(runs)} in {', '.join(map(str, paths))}"
        )
    return runs


def comparable(runs: list[Run]) -> tuple[str, list[Run], list[str]]:
    """(stage, the runs of that stage, one line per run left out): the most common stage wins,
    the first run's on a tie."""
    counts = Counter(run.stage for run in runs)
    stage = max(counts, key=lambda s: (counts[s], s == runs[0].stage))
    kept = [run for run in runs if run.stage == stage]
    left_out = [
        f"{run.name} ({run.path}) is left out: it is a stage {run.stage} run and the "
        f"others are stage {stage}, so its losses and metrics measure something else"
        for run in runs
        if run.stage != stage
    ]
    return stage, kept, left_out


def unique_names(runs: Sequence[Run]) -> list[str]:
    """Folder names, with the parent folder added where two runs share a name."""
    counts = Counter(run.name for run in runs)
    return [
        run.name if counts[run.name] == 1 else f"{run.path.parent.name}/{run.name}" for run in runs
    ]


def direction(column: str) -> str | None:
    """``min`` or ``max`` when a column has a better end, else None (e.g. steps)."""
    if any(word in column for word in _HIGHER_IS_BETTER):
        return "max"
    if any(word in column for word in _LOWER_IS_BETTER):
        return "min"
    return None


def best_values(metrics: dict[str, dict[str, float]], columns: Sequence[str]) -> dict[str, str]:
    """Column -> the run with its best value, for columns that at least two runs have."""
    best = {}
    for column in columns:
        way = direction(column)
        values = {name: row[column] for name, row in metrics.items() if column in row}
        if way and len(values) >= 2 and len(set(values.values())) > 1:
            pick = min if way == "min" else max
            best[column] = pick(values, key=values.__getitem__)
    return best


def config_diff(runs: Sequence[Run]) -> dict[str, list[Any]]:
    """Key -> each run's value, for the keys whose values differ (output_dir aside)."""
    keys = list(dict.fromkeys(key for run in runs for key in run.config))
    missing = object()
    diff = {}
    for key in keys:
        if key in _IDENTITY_KEYS:
            continue
        values = [run.config.get(key, missing) for run in runs]
        if any(v != values[0] for v in values):
            diff[key] = ["–" if v is missing else v for v in values]
    return diff
