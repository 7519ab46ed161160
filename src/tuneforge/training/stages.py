"""Training stages. Each is one linear function; `STAGES` dispatches on ``cfg.finetune.stage``.

``sft`` and ``pt`` share one causal-LM workflow: they differ only in how `data` encodes
samples (chat turns with a loss mask vs plain text), which `prepare_datasets` decides.
``cls`` puts a classification head on the same model and trains on labelled texts (in
`classifier`); the preference stages (rm, dpo, kto) are in `preference`, through trl.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from transformers import set_seed

from tuneforge import layout
from tuneforge.config.schema import RunConfig
from tuneforge.data import build_collator, prepare_datasets
from tuneforge.eval.evaluate import evaluate
from tuneforge.models import (
    choose_precision,
    load_tokenizer,
)
from tuneforge.training.classifier import train_classifier
from tuneforge.training.dft import dft_loss
from tuneforge.training.distributed import is_main_process, main_process_first
from tuneforge.training.runner import TrainResult, no_observers, train_and_save, trainable_model
from tuneforge.training.token_accuracy import most_likely_tokens, token_accuracy
from tuneforge.training.trainer import CallbackFactory, build_trainer

logger = logging.getLogger(__name__)

DEFAULT_BATCHING = {
    "padding_free": "each batch's samples back to back in one row, the default for sft "
    "(no padding, each sample attending only to itself, the same samples per step as one "
    "per row; packing: true fills rows to cutoff_len, packing: false pads one per row)",
    "packed": "samples packed into rows of cutoff_len, the default here (each attending only "
    "to itself: no compute on padding; packing: false for one sample per row)",
}


def train_causal_lm(cfg: RunConfig, observers: CallbackFactory = no_observers) -> TrainResult:
    """Supervised fine-tuning (sft) or continued pre-training (pt) of a causal LM."""
    out = Path(cfg.train.output_dir)
    precision = choose_precision(cfg.train)
    logger.info("Precision: %s", precision.reason)

    if cfg.data.packing is None:
        logger.info("Batching: %s", DEFAULT_BATCHING[cfg.batching])
    tokenizer = load_tokenizer(cfg.model)
    with main_process_first(cfg.train.ddp_timeout):  # rank 0 fills the datasets cache
        data = prepare_datasets(cfg, tokenizer)
    if data.template is not None:  # saved with the result, so chat renders as training did
        tokenizer.chat_template = data.template.source

    set_seed(cfg.train.seed)  # adapter initialisation must be as repeatable as the data order
    model = trainable_model(cfg, precision)

    extras: dict[str, Any] = {}
    if cfg.finetune.use_dft_loss:  # the fused loss weights the same way itself
        logger.info("Loss: DFT, each token's cross-entropy weighted by its probability")
        extras["compute_loss_func"] = dft_loss
    if cfg.finetune.compute_accuracy:
        extras["preprocess_logits_for_metrics"] = most_likely_tokens
    trainer = build_trainer(
        cfg,
        model,
        tokenizer,
        data.train,
        data.eval,
        build_collator(tokenizer, batching=cfg.batching),
        precision,
        observers,
        compute_metrics=token_accuracy if cfg.finetune.compute_accuracy else None,
        **extras,
    )
    result = train_and_save(cfg, trainer, final_eval=data.eval is not None and cfg.train.do_eval)
    if cfg.train.do_predict and is_main_process():
        report = evaluate(cfg, adapter=str(out), output_dir=out / layout.PREDICT_DIR)
        logger.info("Predictions on the validation data:\n%s", report.text)
    return result


def train_preference(cfg: RunConfig, observers: CallbackFactory = no_observers) -> TrainResult:
    """rm, dpo and kto through trl, imported only for them (about 1.5 s of start-up)."""
    from tuneforge.training.preference import train_preference as train_with_trl

    return train_with_trl(cfg, observers)


Stage = Callable[[RunConfig, CallbackFactory], TrainResult]

STAGES: Mapping[str, Stage] = MappingProxyType(
    {
        "sft": train_causal_lm,
        "pt": train_causal_lm,
        "cls": train_classifier,
        "rm": train_preference,
        "dpo": train_preference,
        "kto": train_preference,
    }
)


def run_stage(cfg: RunConfig, observers: CallbackFactory = no_observers) -> TrainResult:
    """Run the stage the config names. `tuneforge.train` checks the output folder and the
    memory plan first and passes the training monitor as `observers`."""
    return STAGES[cfg.finetune.stage](cfg, observers)
