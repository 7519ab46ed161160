"""Training stages. Each is one linear function; `STAGES` dispatches on ``cfg.finetune.stage``.

``sft`` and ``pt`` share one causal-LM workflow: they differ only in how `data` encodes
samples (chat turns with a loss mask vs plain text), which `prepare_datasets` decides.
``cls`` puts a classification head on the same model and trains on labelled texts (in
`classifier`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
from transformers import set_seed

from tuneforge import layout
from tuneforge.config.load import save_config
from tuneforge.config.schema import RunConfig
from tuneforge.data import build_collator, prepare_datasets
from tuneforge.errors import OutputError
from tuneforge.eval.evaluate import evaluate
from tuneforge.models import (
    apply_finetuning,
    choose_precision,
    load_model,
    load_tokenizer,
    prepare_for_training,
)
from tuneforge.models.precision import Precision
from tuneforge.training import checkpoint
from tuneforge.training.classifier import train_classifier
from tuneforge.training.distributed import is_main_process, main_process_first
from tuneforge.training.runner import TrainResult, no_observers
from tuneforge.training.trainer import CallbackFactory, TuneforgeTrainer, build_trainer

logger = logging.getLogger(__name__)


def train_causal_lm(cfg: RunConfig, observers: CallbackFactory = no_observers) -> TrainResult:
    """Supervised fine-tuning (sft) or continued pre-training (pt) of a causal LM."""
    out = Path(cfg.train.output_dir)
    precision = choose_precision(cfg.train)
    logger.info("Precision: %s", precision.reason)

    tokenizer = load_tokenizer(cfg.model)
    with main_process_first(cfg.train.ddp_timeout):  # rank 0 fills the datasets cache
        data = prepare_datasets(cfg, tokenizer)
    if data.template is not None:  # saved with the result, so chat renders as training did
        tokenizer.chat_template = data.template.source

    set_seed(cfg.train.seed)  # adapter initialisation must be as repeatable as the data order
    model = _trainable_model(cfg, precision)

    trainer = build_trainer(
        cfg,
        model,
        tokenizer,
        data.train,
        data.eval,
        build_collator(tokenizer, packing=cfg.packing),
        precision,
        observers,
    )
    result = _train_and_save(cfg, trainer, final_eval=data.eval is not None and cfg.train.do_eval)
    if cfg.train.do_predict and is_main_process():
        report = evaluate(cfg, adapter=str(out), output_dir=out / layout.PREDICT_DIR)
        logger.info("Predictions on the validation data:\n%s", report.text)
    return result


def _trainable_model(cfg: RunConfig, precision: Precision, **head: Any) -> Any:
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


def _train_and_save(cfg: RunConfig, trainer: TuneforgeTrainer, *, final_eval: bool) -> TrainResult:
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


def _check_steps_left(trainer: TuneforgeTrainer, resume: checkpoint.Resume) -> None:
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


Stage = Callable[[RunConfig, CallbackFactory], TrainResult]

STAGES: Mapping[str, Stage] = MappingProxyType(
    {
        "sft": train_causal_lm,
        "pt": train_causal_lm,
        "cls": train_classifier,
    }
)


def run_stage(cfg: RunConfig, observers: CallbackFactory = no_observers) -> TrainResult:
    """Run the stage the config names. `tuneforge.train` checks the output folder and the
    memory plan first and passes the training monitor as `observers`."""
    return STAGES[cfg.finetune.stage](cfg, observers)
