"""Read what a training run left in its folder: config, log, results, evaluation files.

A run that crashed half-way still has its config and the log up to the crash (the last line
may be torn); `read_run` reads what exists and says what is missing, so a report of an
unfinished run shows its curves and states that it stopped early.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tuneforge.errors import OutputError
from tuneforge.eval.evaluate import METRICS_NAME
from tuneforge.eval.generate import PREDICTIONS_NAME
from tuneforge.layout import CONFIG_NAME, EVAL_DIR, LOG_NAME, RESULTS_NAME
from tuneforge.monitor.alerts import NONFINITE

BASE_PREDICTIONS_NAME = PREDICTIONS_NAME.replace(".jsonl", "_base.jsonl")
FORGETTING_NAME = "forgetting.json"

Point = tuple[int, float]


@dataclass
class Run:
    """One run folder as read from disk; every part may be empty for an unfinished run."""

    path: Path
    config: dict[str, Any]
    entries: list[dict[str, Any]]
    results: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    forgetting: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def stage(self) -> str:
        return str(self.config.get("stage", "unknown"))

    @property
    def last_step(self) -> int:
        return max((int(e.get("step", 0)) for e in self.entries), default=0)

    @property
    def max_steps(self) -> int | None:
        planned = [int(e["max_steps"]) for e in self.entries if "max_steps" in e]
        return planned[-1] if planned else None

    @property
    def alerts(self) -> list[dict[str, Any]]:
        return [e for e in self.entries if "alert" in e]

    @property
    def status(self) -> str:
        """``finished``, or why and where it stopped."""
        halted = [a for a in self.alerts if a["alert"] == NONFINITE]
        if halted:
            return f"stopped early at step {halted[0]['step']}: the loss became NaN/inf"
        if not self.results:
            of = f" of {self.max_steps}" if self.max_steps else ""
            return (
                f"stopped early at step {self.last_step}{of}: no {RESULTS_NAME}, the run "
                f"crashed or is still going; showing what was logged"
            )
        return "finished"

    def series(self, key: str) -> list[Point]:
        """(step, value) of every log entry holding `key`, e.g. ``loss`` or ``eval_loss``."""
        return [
            (int(e["step"]), float(e[key]))
            for e in self.entries
            if isinstance(e.get(key), (int, float)) and not isinstance(e.get(key), bool)
        ]

    def weight_series(self, measure: str) -> list[Point]:
        return [
            (int(e["step"]), float(e["weights"][measure]))
            for e in self.entries
            if measure in e.get("weights", {})
        ]

    def layer_series(self, measure: str) -> dict[str, list[Point]]:
        out: dict[str, list[Point]] = {}
        for entry in self.entries:
            for layer, value in entry.get("weights_by_layer", {}).get(measure, {}).items():
                out.setdefault(layer, []).append((int(entry["step"]), float(value)))
        return out

    def summary(self) -> dict[str, float]:
        """The numbers a reader compares first: final and best losses, speed, memory, scores."""
        out: dict[str, float] = {"steps": float(self.last_step)}
        for key, label in (("loss", "final_train_loss"), ("eval_loss", "final_eval_loss")):
            points = [v for _, v in self.series(key) if math.isfinite(v)]
            if points:
                out[label] = points[-1]
        evals = [v for _, v in self.series("eval_loss") if math.isfinite(v)]
        if evals:
            out["best_eval_loss"] = min(evals)
        speed = [v for _, v in self.series("tokens_per_s")]
        if speed:
            out["tokens_per_s"] = sum(speed) / len(speed)
        for key in ("peak_memory_rss_gb", "peak_memory_cuda_gb"):
            points = [v for _, v in self.series(key)]
            if points:
                out[key] = max(points)
        for key, value in self.results.items():
            validation_speed = key.startswith("eval_") and key.endswith(
                ("_runtime", "_per_second", "_preparation_time")
            )
            if (
                isinstance(value, (int, float))
                and (key.startswith("eval_") or key in ("train_runtime", "train_loss"))
                and key != "eval_loss"
                and not validation_speed
            ):
                out[key] = float(value)
        for model, scores in self.evaluation.items():
            if model in ("tuned", "model") and isinstance(scores, dict):
                out.update(
                    {
                        f"test_{k}": float(v)
                        for k, v in scores.items()
                        if isinstance(v, (int, float))
                    }
                )
        for key, value in self.forgetting.get("kept", {}).items():
            if isinstance(value, (int, float)):
                out[f"kept_{key}"] = float(value)
        return out


def is_run(path: Path) -> bool:
    return path.is_dir() and ((path / CONFIG_NAME).is_file() or (path / LOG_NAME).is_file())


def read_run(path: str | Path) -> Run:
    """The run in `path`; `OutputError` when the folder is not a tuneforge run."""
    folder = Path(path)
    if not folder.is_dir():
        raise OutputError(f"{folder}: no such folder; give the output_dir of a training run")
    if not is_run(folder):
        raise OutputError(
            f"{folder}: not a tuneforge run (no {CONFIG_NAME} or {LOG_NAME}); "
            f"give the output_dir of a training run"
        )
    notes: list[str] = []
    config: dict[str, Any] = {}
    if (folder / CONFIG_NAME).is_file():
        loaded = yaml.safe_load((folder / CONFIG_NAME).read_text(encoding="utf-8"))
        config = loaded if isinstance(loaded, dict) else {}
    else:
        notes.append(f"no {CONFIG_NAME}: the configuration is unknown")
    entries = _read_log(folder / LOG_NAME, notes)
    evaluation_dir = folder / EVAL_DIR
    return Run(
        path=folder,
        config=config,
        entries=entries,
        results=_read_json(folder / RESULTS_NAME, notes),
        evaluation=_read_json(evaluation_dir / METRICS_NAME, notes),
        forgetting=_read_json(evaluation_dir / FORGETTING_NAME, notes),
        samples=_read_samples(evaluation_dir),
        notes=notes,
    )


def _read_log(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    if not path.is_file():
        notes.append(f"no {LOG_NAME}: nothing was logged")
        return []
    entries = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # torn by a crash while writing
                notes.append(f"{path.name}: the last line was cut off and is left out")
                continue
            raise OutputError(f"{path}:{number}: not a JSON log line; the log is damaged") from None
        if isinstance(entry, dict) and "step" in entry:
            entries.append(entry)
    return entries


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        notes.append(f"{path}: not valid JSON, left out")
        return {}
    return data if isinstance(data, dict) else {}


def _read_samples(folder: Path, limit: int = 8) -> list[dict[str, Any]]:
    """The first `limit` evaluation answers, tuned beside base when both were written."""
    tuned = _jsonl(folder / PREDICTIONS_NAME, limit)
    base = {
        row.get("index"): row.get("prediction")
        for row in _jsonl(folder / BASE_PREDICTIONS_NAME, None)
    }
    return [
        {
            "prompt": row.get("prompt", ""),
            "reference": row.get("reference"),
            "tuned": row.get("prediction", ""),
            "base": base.get(row.get("index")),
        }
        for row in tuned
    ]


def _jsonl(path: Path, limit: int | None) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    rows: list[dict[str, Any]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if limit is not None and len(rows) >= limit:
                break
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows
