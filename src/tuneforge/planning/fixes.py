"""Changes that would make a run fit, each estimated as the run it would become.

Every candidate is a set of ``key=value`` overrides applied to the user's config and
estimated the same way as the config itself (the finetuning ones on a fresh copy of the
meta-device model), so the new totals come from the same arithmetic as the first one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuneforge.config.load import replace
from tuneforge.config.schema import RunConfig
from tuneforge.planning.memory import MemoryEstimate, Workload, estimate
from tuneforge.planning.shape import ModelShape, model_shape

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class Fix:
    """One change: the overrides, why it saves memory, and the estimate with it applied."""

    overrides: dict[str, Any]
    why: str
    estimate: MemoryEstimate

    @property
    def change(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.overrides.items())


@dataclass(frozen=True)
class Candidate:
    """A change worth estimating, and why it saves memory."""

    overrides: dict[str, Any]
    why: str


def candidates(cfg: RunConfig, work: Workload, suggested_cutoff: int | None) -> Iterator[Candidate]:
    """The usual ways to save memory that this config does not use yet, cheapest first."""
    finetune, train = cfg.finetune, cfg.train
    if not train.gradient_checkpointing:
        yield Candidate(
            {"gradient_checkpointing": True},
            "keep one input per layer and recompute the rest in backward (~30% slower)",
        )
    if train.per_device_train_batch_size > 1:
        smaller = max(1, train.per_device_train_batch_size // 2)
        scale = train.per_device_train_batch_size // smaller
        yield Candidate(
            {
                "per_device_train_batch_size": smaller,
                "gradient_accumulation_steps": train.gradient_accumulation_steps * scale,
            },
            "half the batch per step, the same effective batch by accumulation",
        )
    if suggested_cutoff is not None and suggested_cutoff < cfg.data.cutoff_len:
        yield Candidate(
            {"cutoff_len": suggested_cutoff},
            "the data's 95th length percentile, rounded up: 5% or fewer truncated",
        )
    if train.optim in ("adamw_torch", "adamw_torch_fused"):
        yield Candidate(
            {"optim": "adamw_bnb_8bit"},
            "AdamW's two moments in 8 bits: 2 instead of 8 bytes per trained "
            "parameter (bitsandbytes)",
        )
    if finetune.finetuning_type != "lora":
        yield Candidate(
            {"finetuning_type": "lora"},
            "train small adapters; no gradients or optimizer states for the base",
        )
    if work.quantization_bit is None:
        yield Candidate(
            {"finetuning_type": "lora", "quantization_bit": 4},
            "QLoRA: base weights in 4 bits (bitsandbytes), adapters on top",
        )


def find_fixes(
    cfg: RunConfig,
    shape: ModelShape,
    base: PreTrainedModel,
    config: Any,
    work: Workload,
    suggested_cutoff: int | None,
    make_workload: Callable[[RunConfig], Workload],
) -> list[Fix]:
    """Each candidate alone, then (when there are several) all of them together."""
    shapes = {cfg.finetune.model_dump_json(): shape}

    def fix(overrides: dict[str, Any], why: str) -> Fix:
        changed = replace(cfg, **overrides)
        key = changed.finetune.model_dump_json()
        if key not in shapes:  # what trains changed: apply it to a fresh copy of the model
            shapes[key] = model_shape(changed, base, config)
        return Fix(overrides, why, estimate(shapes[key], make_workload(changed)))

    found = list(candidates(cfg, work, suggested_cutoff))
    fixes = [fix(candidate.overrides, candidate.why) for candidate in found]
    if len(found) > 1:
        merged = {key: value for candidate in found for key, value in candidate.overrides.items()}
        fixes.append(fix(merged, "all of the above together"))
    return fixes
