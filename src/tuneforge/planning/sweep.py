"""``tuneforge sweep``: short runs over a grid of settings, ranked by validation result.

Every run starts from the same config and seed and gets the same budget (steps, or tokens
turned into steps per batch size), so the only differences are the grid's. Runs go to
``<sweep>/<name>/`` (``tuneforge compare <sweep>`` puts them side by side) and each finished
run is recorded in ``<sweep>/sweep.json`` as soon as it ends: the same command after an
interruption skips what finished and resumes the run that was cut off from its checkpoint.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tuneforge.config.load import parse_value, replace
from tuneforge.config.schema import RunConfig
from tuneforge.errors import ConfigError, OutputError, UserError
from tuneforge.layout import LOG_NAME, complete_checkpoints
from tuneforge.planning.advice import devices
from tuneforge.training.stages import TrainResult

logger = logging.getLogger(__name__)

STATE_NAME = "sweep.json"
# Validation share a sweep holds out when the config has no validation data of its own.
DEFAULT_VAL_SIZE = 0.1
# Validations per run (besides the final one), to see each curve.
EVALS_PER_RUN = 5
# A run whose last third of logged losses averages this much above its first third diverged.
RISE_LIMIT = 1.1
# Grid flags of the command line -> the config key each one sets.
FLAG_KEYS = {"lr": "learning_rate", "batch": "per_device_train_batch_size"}


@dataclass(frozen=True)
class Outcome:
    """One finished run of a sweep."""

    name: str
    settings: dict[str, Any]
    metric: float | None
    train_loss: float | None
    steps: int
    diverged: str | None

    @property
    def status(self) -> str:
        return f"diverged: {self.diverged}" if self.diverged else "ok"


@dataclass(frozen=True)
class SweepResult:
    folder: Path
    metric: str
    greater_is_better: bool
    outcomes: tuple[Outcome, ...]

    def ranked(self) -> list[Outcome]:
        """Best first; diverged runs and runs without a result last."""

        def key(outcome: Outcome) -> tuple[bool, float]:
            value = outcome.metric
            if outcome.diverged is not None or value is None or not math.isfinite(value):
                return True, 0.0
            return False, -value if self.greater_is_better else value

        return sorted(self.outcomes, key=key)

    def table(self) -> str:
        keys = list(dict.fromkeys(key for outcome in self.outcomes for key in outcome.settings))
        header = ["rank", "run", *keys, self.metric, "train loss", "steps", "status"]
        rows = [
            [
                str(rank),
                outcome.name,
                *(f"{outcome.settings.get(k)}" for k in keys),
                _number(outcome.metric),
                _number(outcome.train_loss),
                str(outcome.steps),
                outcome.status,
            ]
            for rank, outcome in enumerate(self.ranked(), start=1)
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            for row in [header, *rows]
        ]
        lines.append(f"Runs in {self.folder}; `tuneforge compare {self.folder}` plots them.")
        return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def parse_values(flag: str, text: str, kind: type | None = None) -> list[Any]:
    """``5e-5,1e-4`` -> [5e-05, 0.0001]: comma-separated values of `kind` (float, int), or
    YAML values the config then validates; each bad one named."""
    values = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            raise ConfigError(
                f"{flag} {text!r}: an empty value; give values separated by "
                f"commas, e.g. {flag} 1e-4,2e-4"
            )
        if kind is None:
            values.append(parse_value(part, "--grid", flag.removeprefix("--grid ")))
            continue
        try:
            values.append(kind(part))
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ConfigError(f"{flag}: {part!r} is not {what}") from None
    return list(dict.fromkeys(values))


def parse_grid(lr: str | None, batch: str | None, others: Sequence[str]) -> dict[str, list[Any]]:
    """The command line's grid flags (``--lr``, ``--batch``, ``--grid key=v1,v2``) as
    config keys and values."""
    grid: dict[str, list[Any]] = {}
    for flag, text, kind in (("lr", lr, float), ("batch", batch, int)):
        if text is not None:
            grid[FLAG_KEYS[flag]] = parse_values(f"--{flag}", text, kind)
    for item in others:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--grid {item!r}: expected key=value1,value2, e.g. --grid lora_rank=8,16"
            )
        grid[key.strip()] = parse_values(f"--grid {key.strip()}", text)
    if not grid:
        raise ConfigError("sweep: nothing to vary; give --lr, --batch or --grid key=v1,v2")
    return grid


def run_name(settings: Mapping[str, Any]) -> str:
    """``learning_rate=1e-4, per_device_train_batch_size=4`` -> ``lr-0.0001_batch-4``."""
    short = {value: key for key, value in FLAG_KEYS.items()}
    return "_".join(f"{short.get(key, key)}-{value}" for key, value in settings.items())


def sweep(
    cfg: RunConfig,
    grid: Mapping[str, Sequence[Any]],
    folder: str | Path,
    *,
    train: Callable[[RunConfig], TrainResult],
    max_steps: int | None = None,
    max_tokens: int | None = None,
) -> SweepResult:
    """Train every combination of `grid` for the same budget and rank them (see module doc).
    `train` runs one training (`tuneforge.train`: checks, memory plan, monitoring)."""
    if (max_steps is None) == (max_tokens is None):
        raise ConfigError("sweep: give one budget, --max-steps or --max-tokens")
    folder = Path(folder)
    base = cfg.flat(only_set=True)  # what every run starts from, and what identifies the sweep
    for key in ("output_dir", "resume_from_checkpoint", "overwrite_output_dir"):
        base.pop(key, None)
    # Each run decides where it goes and whether it resumes, not the config it came from.
    shared: dict[str, Any] = {"resume_from_checkpoint": None, "overwrite_output_dir": False}
    if not (cfg.data.val_size or cfg.data.eval_dataset):
        logger.info(
            "sweep: the config has no validation data; holding out val_size=%s", DEFAULT_VAL_SIZE
        )
        base["val_size"] = shared["val_size"] = DEFAULT_VAL_SIZE
    combos = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    configs: dict[str, RunConfig] = {}
    problems: list[str] = []
    for settings in combos:
        name = run_name(settings)
        try:
            trial = replace(cfg, **{**shared, **settings})
            steps = max_steps or _steps_for(trial, max_tokens or 0)
            configs[name] = replace(
                trial,
                max_steps=steps,
                early_stopping_steps=None,
                output_dir=str(folder / name),
                do_eval=True,
                eval_steps=cfg.train.eval_steps or max(1, steps // EVALS_PER_RUN),
            )
        except UserError as exc:
            problems += [f"sweep run {name}: {line}" for line in exc.lines]
    if problems:
        raise ConfigError(*dict.fromkeys(problems))
    state = _load_state(folder, base, max_steps, max_tokens)
    _save_state(folder, state)
    metric = cfg.train.metric_for_best_model
    for index, (name, run_cfg) in enumerate(configs.items(), start=1):
        if name in state["runs"]:
            logger.info("sweep: run %d/%d %s already finished", index, len(configs), name)
            continue
        logger.info("sweep: run %d/%d %s", index, len(configs), name)
        outcome = _run(name, combos[index - 1], run_cfg, metric, train)
        state["runs"][name] = asdict(outcome)
        _save_state(folder, state)
    outcomes = tuple(Outcome(**state["runs"][name]) for name in configs)
    return SweepResult(folder, metric, "loss" not in metric, outcomes)


def _steps_for(cfg: RunConfig, tokens: int) -> int:
    """Steps that give `tokens` tokens at this batch size (rows of cutoff_len tokens)."""
    t = cfg.train
    per_step = (
        t.per_device_train_batch_size
        * t.gradient_accumulation_steps
        * devices()
        * cfg.data.cutoff_len
    )
    return max(1, math.ceil(tokens / per_step))


def _run(
    name: str,
    settings: dict[str, Any],
    cfg: RunConfig,
    metric: str,
    train: Callable[[RunConfig], TrainResult],
) -> Outcome:
    """Train one run (resuming its last complete checkpoint) and read how it went."""
    out = Path(cfg.train.output_dir)
    complete = complete_checkpoints(out)
    resume = {"resume_from_checkpoint": True} if complete else {"overwrite_output_dir": True}
    result = train(replace(cfg, **resume))
    steps = result.step
    if not result.completed:
        logger.warning(
            "sweep: run %s stopped at step %d of %d; run the same command again to "
            "continue the sweep from there",
            name,
            steps,
            cfg.train.max_steps,
        )
        raise KeyboardInterrupt
    losses = [entry["loss"] for entry in _log(out) if "loss" in entry]
    value = result.metrics.get(metric if metric.startswith("eval_") else f"eval_{metric}")
    return Outcome(
        name,
        settings,
        None if value is None else float(value),
        losses[-1] if losses else None,
        steps,
        diverged(losses, value),
    )


def _log(out: Path) -> list[dict[str, Any]]:
    path = out / LOG_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def diverged(losses: Sequence[float], metric: float | None) -> str | None:
    """Why a run counts as diverged (a NaN/inf loss, or a loss that rose), or None."""
    if any(not math.isfinite(loss) for loss in losses) or (
        metric is not None and not math.isfinite(metric)
    ):
        return "loss is NaN or infinite"
    third = len(losses) // 3
    if third:
        first, last = losses[:third], losses[-third:]
        start, end = sum(first) / third, sum(last) / third
        if end > start * RISE_LIMIT:
            return f"loss rose from {start:.3g} to {end:.3g}"
    return None


def _load_state(
    folder: Path, base: dict[str, Any], max_steps: int | None, max_tokens: int | None
) -> dict[str, Any]:
    """The record of an earlier sweep in `folder` (the same config and budget), or a new one."""
    budget = {"max_steps": max_steps, "max_tokens": max_tokens}
    fresh = {"config": base, "budget": budget, "runs": {}}
    path = folder / STATE_NAME
    if not path.is_file():
        if folder.is_dir() and any(folder.iterdir()):
            raise OutputError(f"sweep folder '{folder}' holds other files; choose another --out")
        return fresh
    state = json.loads(path.read_text(encoding="utf-8"))
    if state.get("config") != json.loads(json.dumps(base)) or state.get("budget") != budget:
        raise OutputError(
            f"sweep folder '{folder}' holds a sweep of another config or budget; "
            f"choose another --out, or delete it to start over"
        )
    return state


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    """Write sweep.json atomically: an interruption leaves the old record or the new one."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (STATE_NAME + ".tmp")
    tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
    os.replace(tmp, folder / STATE_NAME)
