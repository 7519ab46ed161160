"""Stage ``cls``: a classification head on the model, trained on labelled texts.

Read top to bottom: the data, the TF-IDF baseline, the model, the linear probe that the head
starts from (LP-FT; `probe`), the trainer (the head in its own optimizer groups at
``cls_head_lr``), training, and the three measured side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from transformers import DataCollatorWithPadding, set_seed

from tuneforge.config.load import replace
from tuneforge.config.schema import (
    CLS_FITTED_HEAD_LR_FACTOR,
    CLS_FRESH_HEAD_LR_FACTOR,
    RunConfig,
)
from tuneforge.data.prepare import prepare_labelled
from tuneforge.eval.baseline import score_baseline
from tuneforge.eval.classify import TrainerMetrics
from tuneforge.eval.metrics import CLASSIFICATION_PACKAGES, require
from tuneforge.eval.report import columns_table
from tuneforge.models import choose_precision, load_tokenizer
from tuneforge.models.load import HEADS
from tuneforge.training.distributed import main_process_first
from tuneforge.training.probe import Probe, install_head, train_probe
from tuneforge.training.runner import TrainResult, no_observers, train_and_save, trainable_model
from tuneforge.training.trainer import CallbackFactory, TuneforgeTrainer, build_trainer

logger = logging.getLogger(__name__)

SCORES = ("accuracy", "macro_f1")


def train_classifier(cfg: RunConfig, observers: CallbackFactory = no_observers) -> TrainResult:
    """Sequence classification (cls): a label per text, the head started from a linear probe
    of the model's own features, measured against the probe and a TF-IDF baseline."""
    require(CLASSIFICATION_PACKAGES, "stage cls")
    precision = choose_precision(cfg.train)
    logger.info("Precision: %s", precision.reason)

    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "right"  # both poolings read the tokens before the padding
    with main_process_first(cfg.train.ddp_timeout):
        data = prepare_labelled(cfg, tokenizer)
    cfg = replace(cfg, label_names=list(data.names))  # the class names are saved with the result
    baseline = score_baseline(data) if cfg.eval.tfidf_baseline else None

    set_seed(cfg.train.seed)
    model = trainable_model(
        cfg,
        precision,
        labels=data.names,
        pad_token_id=tokenizer.pad_token_id,
        pooling=cfg.finetune.resolved_cls_pooling,
    )
    probe = None
    if probes_head(cfg):
        probe = train_probe(
            model,
            data.train,
            data.eval,
            data.names,
            tokenizer,
            precision,
            batch_size=cfg.train.per_device_eval_batch_size,
            seed=cfg.train.seed,
        )
        install_head(model, probe)
        _log_probe(probe, baseline)
    else:
        logger.info("Classification head: %s", _head_origin(cfg))

    head_lr = head_learning_rate(cfg)
    logger.info(
        "Learning rates: head %g, %s %g",
        head_lr,
        "adapters" if cfg.finetune.adapter else "the rest",
        cfg.train.learning_rate,
    )
    trainer = build_trainer(
        cfg,
        model,
        tokenizer,
        data.train,
        data.eval,
        DataCollatorWithPadding(tokenizer),
        precision,
        observers,
        compute_metrics=TrainerMetrics(data.names, baseline, probe.scores if probe else None),
        kind=ClassifierTrainer,
        head_lr=head_lr,
    )
    result = train_and_save(cfg, trainer, final_eval=data.eval is not None)
    if data.eval is not None and (baseline is not None or (probe and probe.scores)):
        columns = {"tfidf": baseline} if baseline is not None else {}
        if probe is not None and probe.scores is not None:
            columns["probe"] = probe.scores
        columns["model"] = {key: result.metrics[f"eval_{key}"] for key in SCORES}
        logger.info("Validation:\n%s", columns_table(columns, SCORES))
    return result


def probes_head(cfg: RunConfig) -> bool:
    """Probe unless asked not to; a continued adapter keeps its trained head unless
    ``cls_head_init: probe`` asks for a new one on the adapted features."""
    init = cfg.finetune.cls_head_init
    return init == "probe" or (init is None and not cfg.model.adapter_name_or_path)


def _head_origin(cfg: RunConfig) -> str:
    if cfg.finetune.cls_head_init == "random":
        return "random initial weights (cls_head_init: random)"
    return f"from the adapter {cfg.model.adapter_name_or_path} (cls_head_init: probe refits it)"


def head_learning_rate(cfg: RunConfig) -> float:
    """``cls_head_lr``, or a multiple of learning_rate: large for a random head, which must
    travel far, small for a fitted one, which an Adam step of the adapters' size undoes."""
    if cfg.finetune.cls_head_lr:
        return cfg.finetune.cls_head_lr
    fresh = cfg.finetune.cls_head_init == "random"
    factor = CLS_FRESH_HEAD_LR_FACTOR if fresh else CLS_FITTED_HEAD_LR_FACTOR
    return factor * cfg.train.learning_rate


def _log_probe(probe: Probe, baseline: dict[str, float] | None) -> None:
    if probe.scores is None:
        validation = "no validation data"
    else:
        validation = (
            f"validation accuracy {probe.scores['accuracy']:.4f}, macro-F1 "
            f"{probe.scores['macro_f1']:.4f}"
        )
        if baseline is not None:
            validation += (
                f" (TF-IDF baseline: accuracy {baseline['accuracy']:.4f}, macro-F1 "
                f"{baseline['macro_f1']:.4f})"
            )
    logger.info(
        "Classification head: a linear probe of the model's features (C=%g, %.1f s): "
        "training accuracy %.4f, %s; fine-tuning starts from it",
        probe.strength,
        probe.seconds,
        probe.train_accuracy,
        validation,
    )


def head_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The trained parameters of the classification head (under peft, its trained copy)."""
    return [
        parameter
        for name, parameter in model.named_parameters()
        if parameter.requires_grad and any(part in HEADS for part in name.split("."))
    ]


def separate_groups(
    optimizer: torch.optim.Optimizer, parameters: Iterable[torch.nn.Parameter], lr: float
) -> None:
    """Move `parameters` into groups of their own at learning rate `lr`, each keeping the
    rest of its former group's settings (weight decay); before the first step only."""
    chosen = {id(parameter) for parameter in parameters}
    groups = []
    for group in optimizer.param_groups:
        rest = [p for p in group["params"] if id(p) not in chosen]
        own = [p for p in group["params"] if id(p) in chosen]
        if rest:
            groups.append({**group, "params": rest})
        if own:
            groups.append({**group, "params": own, "lr": lr})
    optimizer.param_groups[:] = groups


class ClassifierTrainer(TuneforgeTrainer):
    """The trainer with the head at its own learning rate; the schedule scales both alike."""

    def __init__(self, *args: Any, head_lr: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.head_lr = head_lr

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        fresh = self.optimizer is None
        optimizer = super().create_optimizer(model)
        trained = model if model is not None else self.model
        if fresh and trained is not None:
            separate_groups(optimizer, head_parameters(trained), self.head_lr)
        return optimizer
