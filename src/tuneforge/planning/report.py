"""``tuneforge plan``: memory breakdown, whether it fits, what would, and advice; no training.

`make_plan` puts the parts together and `Plan.text` prints them. `check_memory` is the
short version a training run calls before it loads any weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.errors import ConfigError, UserError
from tuneforge.models import Hardware, choose_precision, detect_hardware, load_tokenizer
from tuneforge.planning.advice import Advice, advise
from tuneforge.planning.budget import classifier_budget
from tuneforge.planning.fixes import Fix, find_fixes
from tuneforge.planning.memory import (
    DeviceMemory,
    MemoryEstimate,
    Workload,
    device_memory,
    estimate,
    workload,
)
from tuneforge.planning.preference_advice import count_preferences, preference_advice
from tuneforge.planning.shape import ModelShape, build_meta_model, model_shape, read_model_config

logger = logging.getLogger(__name__)

GB = 1e9
# Rows of each dataset `plan` reads of a stream (``streaming: true``): a sample, said so.
STREAM_SAMPLE = 1000


@dataclass(frozen=True)
class Plan:
    """What a run will need and what to change; `text` is what ``tuneforge plan`` prints."""

    shape: ModelShape
    workload: Workload
    estimate: MemoryEstimate
    device: DeviceMemory
    precision: str
    fixes: tuple[Fix, ...]
    advice: tuple[Advice, ...]
    data: Any = None
    data_note: str | None = None

    @property
    def fits(self) -> bool:
        return self.estimate.peak <= self.device.available

    def text(self) -> str:
        from tuneforge.planning.render import render_plan

        return render_plan(self)


@dataclass(frozen=True)
class _Estimated:
    """One config estimated: the pieces `find_fixes` re-uses for its variants."""

    cfg: RunConfig
    hardware: Hardware
    config: Any
    base: Any
    shape: ModelShape
    work: Workload
    memory: MemoryEstimate
    device: DeviceMemory

    @property
    def fits(self) -> bool:
        return self.memory.peak <= self.device.available

    def fixes(self, suggested_cutoff: int | None) -> list[Fix]:
        return find_fixes(
            self.cfg,
            self.shape,
            self.base,
            self.config,
            self.work,
            suggested_cutoff,
            lambda changed: workload(changed, self.hardware),
        )


def _estimate(cfg: RunConfig, hardware: Hardware | None) -> _Estimated:
    hardware = hardware or detect_hardware()
    config = read_model_config(cfg)
    base = build_meta_model(cfg, config)
    shape = model_shape(cfg, base, config)
    work = workload(cfg, hardware)
    return _Estimated(
        cfg, hardware, config, base, shape, work, estimate(shape, work), device_memory(hardware)
    )


def make_plan(cfg: RunConfig, *, with_data: bool = True, hardware: Hardware | None = None) -> Plan:
    """Estimate, check and advise on `cfg`; with `with_data`, read and measure its datasets
    too (for the advice and a cutoff_len suggestion)."""
    run = _estimate(cfg, hardware)
    # `tuneforge data inspect` does not read preference rows: they are counted instead.
    counts = count_preferences(cfg) if with_data and cfg.finetune.preference else None
    data, note = _inspect(cfg) if with_data and counts is None else (None, None)
    if counts is not None:
        note = f"{counts.samples:,} preference samples counted; no data report for them yet"
    suggested = data.suggested_cutoff_len if data is not None else None
    fixes = () if run.fits else tuple(run.fixes(suggested))
    samples = data.samples if data is not None else counts.samples if counts else None
    if data is not None and cfg.data.streaming:  # a sample: no advice from its size
        samples = None
        sampled = (
            f"streaming: these figures come from a sample, the first {STREAM_SAMPLE:,} rows "
            f"of each dataset"
        )
        note = f"{sampled}; {note}" if note else sampled
    advice = advise(cfg, run.shape, samples) + preference_advice(cfg, counts)
    if cfg.finetune.stage == "cls":
        budget = classifier_budget(cfg, run.shape, data, run.hardware)
        replaced = {row.setting for row in budget}
        advice = [row for row in advice if row.setting not in replaced] + budget
    return Plan(
        run.shape,
        run.work,
        run.memory,
        run.device,
        choose_precision(cfg.train, run.hardware).reason,
        fixes,
        tuple(advice),
        data,
        note,
    )


def _inspect(cfg: RunConfig) -> tuple[Any, str | None]:
    """The data report, or why there is none (no tokenizer next to a bare config.json...)."""
    from tuneforge.data.inspect import inspect_datasets

    limit = STREAM_SAMPLE if cfg.data.streaming else None
    try:
        tokenizer = load_tokenizer(cfg.model)
    except UserError as exc:
        return inspect_datasets(
            cfg, None, limit=limit
        ), f"token lengths not measured: {exc.lines[0]}"
    return inspect_datasets(cfg, tokenizer, limit=limit), None


def check_memory(cfg: RunConfig, *, force: bool = False) -> MemoryEstimate:
    """Refuse a run whose estimated peak exceeds what the device has free, naming the
    cheapest change that fits; with `force`, or with DeepSpeed/FSDP sharding (which the
    estimate does not model), only warn."""
    run = _estimate(cfg, None)
    memory, device = run.memory, run.device
    summary = (
        f"estimated peak {memory.peak / GB:.2f} GB of {device.available / GB:.1f} GB "
        f"available ({device.description})"
    )
    if run.fits:
        logger.info("Memory: %s; `tuneforge plan` shows the breakdown", summary)
        return memory
    fitting = [fix for fix in run.fixes(None) if fix.estimate.peak <= device.available]
    advice = (
        f"try {fitting[0].change} ({fitting[0].estimate.peak / GB:.2f} GB)"
        if fitting
        else "no single change fits; see `tuneforge plan` for the options"
    )
    if force:
        logger.warning("Memory: %s: it will not fit; training anyway (forced). %s", summary, advice)
        return memory
    if cfg.train.deepspeed or cfg.train.fsdp:
        logger.warning(
            "Memory: %s for one process holding the whole model; DeepSpeed/FSDP "
            "shard it across processes, which the estimate does not model: not "
            "refusing. %s",
            summary,
            advice,
        )
        return memory
    raise ConfigError(
        f"this run will not fit: {summary}; {advice}, or pass --force (force=True) to train anyway"
    )
