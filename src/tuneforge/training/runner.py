"""What every stage does around its trainer: build the trainable model, check the resume,
write the config, train, and save the result (or, interrupted, say where to resume)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tuneforge import layout
from tuneforge.config.load import save_config
from tuneforge.config.schema import RunConfig
from tuneforge.errors import OutputError
from tuneforge.models import apply_finetuning, load_model, prepare_for_training
from tuneforge.models.precision import Precision
from tuneforge.training import checkpoint
from tuneforge.training.distributed import is_main_process

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What a run left: `completed` is False when it was interrupted, and `resume_from` is
    then the checkpoint that continues it (``resume_from_checkpoint: true``)."""

    output_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: str | None = None
    completed: bool = True
    resume_from: Path | None = None
    step: int = 0
    max_steps: int = 0


def no_observers(cfg: RunConfig, has_eval: bool) -> list:
    """No monitoring callbacks (the progress bar, JSONL log and Ctrl-C handling remain)."""
    return []


def trainable_model(cfg: RunConfig, precision: Precision, **head: Any) -> Any:
    """The model every stage trains: fp32 weights (autocast computes in `precision`), the
    finetuning method applied, ready for the backward pass; `head` makes a classifier."""
    base = load_model(
        cfg.model,
        dtype=torch.float32,
        compute_dtype=precision.compute_dtype,
        cutoff_len=cfg.data.cutoff_len,
        **head,
    )
    model = apply_finetuning(base, cfg.finetune, cfg.model)
    return prepare_for_training(model, gradient_checkpointing=cfg.train.gradient_checkpointing)


def train_and_save(cfg: RunConfig, trainer: Any, *, final_eval: bool) -> TrainResult:
    """Check the resume, then (and only then) write the config, train, save the result.

    An interrupted run saves a checkpoint and nothing that looks final: no model in the run
    folder, no all_results.json; its result says where to resume from.
    """
    out = Path(cfg.train.output_dir)
    resume = checkpoint.resolve_resume(
        cfg.train, trainer.data_fingerprint, processes=trainer.args.world_size
    )
    if resume:
        _check_steps_left(trainer, resume)
    if is_main_process():
        checkpoint.clear_output_dir(cfg.train)
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / layout.CONFIG_NAME)
        if cfg.finetune.pissa_init and cfg.finetune.pissa_convert:
            _save_pissa_start(trainer.model, out / layout.PISSA_INIT_DIR)

    result = trainer.train(resume_from_checkpoint=str(resume.path) if resume else None)
    if trainer.interrupted:
        complete = layout.complete_checkpoints(out)
        last = complete[-1] if complete else None
        logger.warning(
            "Interrupted at step %d of %d; no final model was saved",
            trainer.state.global_step,
            trainer.state.max_steps,
        )
        return TrainResult(
            output_dir=out,
            metrics=dict(result.metrics),
            completed=False,
            resume_from=last,
            step=trainer.state.global_step,
            max_steps=trainer.state.max_steps,
        )
    trainer.save_model(str(out))
    if cfg.finetune.pissa_init and cfg.finetune.pissa_convert and is_main_process():
        # Rewritten as a plain LoRA adapter (rank 2r) of the original weights.
        trainer.model.save_pretrained(
            str(out), path_initial_model_for_weight_conversion=str(out / layout.PISSA_INIT_DIR)
        )
        logger.info("PiSSA adapter converted to plain LoRA of the original model (pissa_convert)")
    trainer.save_state()
    metrics = dict(result.metrics)
    if final_eval:
        metrics.update(trainer.evaluate())
    trainer.save_metrics("all", metrics)
    best = trainer.state.best_model_checkpoint
    if best:
        logger.info(
            "Best checkpoint: %s (%s %.4f), saved as the result",
            best,
            trainer.args.metric_for_best_model,
            trainer.state.best_metric,
        )
    logger.info("Saved to %s", out)
    return TrainResult(
        output_dir=out,
        metrics=metrics,
        best_checkpoint=best,
        step=trainer.state.global_step,
        max_steps=trainer.state.max_steps,
    )


def _save_pissa_start(model: Any, folder: Path) -> None:
    """The adapter as PiSSA started it, which peft's conversion subtracts at the end; kept
    from the first start of a run, so a resumed run converts against the same start."""
    if (folder / "adapter_model.safetensors").is_file():
        return
    config = model.peft_config["default"]
    init = config.init_lora_weights
    config.init_lora_weights = True  # saved as a plain LoRA start, as peft's recipe says
    try:
        model.save_pretrained(str(folder))
    finally:
        config.init_lora_weights = init


def _check_steps_left(trainer: Any, resume: checkpoint.Resume) -> None:
    """Say where the run resumes; refuse a resume that has nothing left to train."""
    args = trainer.args
    if args.max_steps > 0:
        total = args.max_steps
    else:
        batches = len(trainer.get_train_dataloader())
        total = math.ceil(
            args.num_train_epochs * math.ceil(batches / args.gradient_accumulation_steps)
        )
    if resume.step >= total:
        raise OutputError(
            f"resume_from_checkpoint: {resume.path} is at step {resume.step} and "
            f"this run has {total} steps: nothing left to train; raise "
            f"num_train_epochs or max_steps"
        )
    logger.info(
        "Resuming from %s: step %d of %d, %d steps left",
        resume.path,
        resume.step,
        total,
        total - resume.step,
    )
