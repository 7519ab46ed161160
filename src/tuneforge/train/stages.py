"""Training stages. Each is one linear function; `STAGES` dispatches on ``cfg.finetune.stage``.

``sft`` and ``pt`` share one causal-LM workflow: they differ only in how `data` encodes
samples (chat turns with a loss mask vs plain text), which `prepare_datasets` decides.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import torch
from transformers import set_seed

from tuneforge.config.load import save_config
from tuneforge.config.schema import RunConfig
from tuneforge.data import build_collator, prepare_datasets
from tuneforge.errors import OutputError
from tuneforge.models import (
    apply_finetuning,
    choose_precision,
    load_model,
    load_tokenizer,
    prepare_for_training,
)
from tuneforge.train import checkpoint
from tuneforge.train.plot import plot_loss
from tuneforge.train.trainer import build_trainer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    output_dir: Path
    metrics: dict[str, float] = field(default_factory=dict)
    best_checkpoint: str | None = None


def train_causal_lm(cfg: RunConfig) -> TrainResult:
    """Supervised fine-tuning (sft) or continued pre-training (pt) of a causal LM."""
    out = Path(cfg.train.output_dir)
    checkpoint.check_output_dir(cfg.train)
    precision = choose_precision(cfg.train)
    logger.info("Precision: %s", precision.reason)

    tokenizer = load_tokenizer(cfg.model)
    data = prepare_datasets(cfg, tokenizer)
    if data.template is not None:  # saved with the result, so chat renders as training did
        tokenizer.chat_template = data.template.source

    set_seed(cfg.train.seed)  # adapter initialisation must be as repeatable as the data order
    model = load_model(cfg.model, dtype=torch.float32)
    model = apply_finetuning(model, cfg.finetune, cfg.model)
    prepare_for_training(model, gradient_checkpointing=cfg.train.gradient_checkpointing)

    checkpoint.clear_output_dir(cfg.train)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / checkpoint.CONFIG_NAME)
    trainer = build_trainer(cfg, model, tokenizer, data.train, data.eval,
                            build_collator(tokenizer, packing=cfg.packing), precision)
    resume = checkpoint.resolve_resume(cfg.train, trainer.data_fingerprint)
    if resume:
        _check_steps_left(trainer, resume)

    result = trainer.train(resume_from_checkpoint=resume)
    trainer.save_model(str(out))
    trainer.save_state()
    metrics = dict(result.metrics)
    if data.eval is not None and cfg.train.do_eval:
        metrics.update(trainer.evaluate())
    trainer.save_metrics("all", metrics)
    if cfg.train.plot_loss:
        plot_loss(trainer.state.log_history, out / "training_loss.png")
    best = trainer.state.best_model_checkpoint
    if best:
        logger.info("Best checkpoint: %s (eval_loss %.4f), saved as the result",
                    best, trainer.state.best_metric)
    logger.info("Saved to %s", out)
    return TrainResult(output_dir=out, metrics=metrics, best_checkpoint=best)


def _check_steps_left(trainer, resume: str) -> None:
    """Say where the run resumes; refuse a resume that has nothing left to train."""
    args = trainer.args
    step = int(Path(resume).name.split("-")[-1])
    if args.max_steps > 0:
        total = args.max_steps
    else:
        batches = len(trainer.get_train_dataloader())
        total = math.ceil(args.num_train_epochs * math.ceil(batches / args.gradient_accumulation_steps))
    if step >= total:
        raise OutputError(f"resume_from_checkpoint: {resume} is at step {step} and this run has "
                          f"{total} steps: nothing left to train; raise num_train_epochs or max_steps")
    logger.info("Resuming from %s: step %d of %d, %d steps left", resume, step, total, total - step)


STAGES: Mapping[str, Callable[[RunConfig], TrainResult]] = MappingProxyType({
    "sft": train_causal_lm,
    "pt": train_causal_lm,
})


def train(cfg: RunConfig) -> TrainResult:
    """Run the stage the config names."""
    return STAGES[cfg.finetune.stage](cfg)
