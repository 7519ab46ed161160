"""Preference stages through trl: dpo (and its losses), kto and rm.

They are the SFT workflow with trl's trainer in place of the stock one: the same tokenizer,
template, model and adapter code, the same checkpoints, resume, early stopping, monitoring
and Ctrl-C (`TuneforgeMixin`). tuneforge encodes the data itself with the run's template
(`data.prepare_preference`), so each trainer is told to take the ids as they are.

The reference model: with LoRA and no ``ref_model`` it is the policy's starting point with the
new adapter switched off (trl keeps no second copy of the weights; continuing an SFT adapter,
trl copies that adapter as the reference). Full and freeze runs load the base once more.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from transformers import set_seed
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer, RewardConfig, RewardTrainer
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer
from trl.experimental.utils import DPODataCollatorWithPadding
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.kto_trainer import DataCollatorForUnpairedPreference
from trl.trainer.reward_trainer import DataCollatorForPreference as RewardCollator

from tuneforge.config.schema import RunConfig
from tuneforge.data.prepare import PreferenceData, prepare_preference
from tuneforge.errors import ConfigError
from tuneforge.models import REWARD_LABEL, choose_precision, load_model, load_tokenizer
from tuneforge.models.adapters import load_adapter
from tuneforge.models.precision import Precision
from tuneforge.training.distributed import main_process_first
from tuneforge.training.runner import TrainResult, no_observers, train_and_save, trainable_model
from tuneforge.training.trainer import (
    CallbackFactory,
    TuneforgeMixin,
    build_trainer,
    training_arguments,
)

logger = logging.getLogger(__name__)


class _TakesIds:
    """tuneforge has tokenised the rows with the run's template: use them as they are."""

    def _prepare_dataset(self, dataset: Any, *args: Any, **kwargs: Any) -> Any:
        return dataset


class DPO(_TakesIds, TuneforgeMixin, DPOTrainer):
    """trl's DPOTrainer (sigmoid, ipo, hinge, robust, ... losses) with tuneforge's additions."""


class Reward(_TakesIds, TuneforgeMixin, RewardTrainer):
    """trl's RewardTrainer: a one-output head scoring chosen above rejected."""


class KTO(TuneforgeMixin, KTOTrainer):
    """trl's KTOTrainer; the rows are tokenised, trl adds each one's KL partner."""

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, name: str) -> Any:
        if not getattr(self, "calculate_KL", False):
            return dataset

        def rotate(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            # Each prompt with the previous row's answer, within a batch (as trl does).
            answers = batch["completion_ids"]
            return {**batch, "KL_completion_ids": [answers[-1], *answers[:-1]]}

        return dataset.map(rotate, batched=True, batch_size=args.per_device_train_batch_size)


class _OldStyle:
    """ORPO and CPO/SimPO (trl.experimental) tokenise text rows themselves; their rows are
    given here in the form that tokenisation makes, so it is skipped."""

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, Any]:
        return feature


class ORPO(_OldStyle, TuneforgeMixin, ORPOTrainer):
    """trl's ORPO: the SFT loss plus an odds-ratio term; no reference model."""


class SimPO(_OldStyle, TuneforgeMixin, CPOTrainer):
    """trl's CPO trainer with the SimPO loss: length-normalised, no reference model."""


def train_preference(cfg: RunConfig, observers: CallbackFactory = no_observers) -> TrainResult:
    """Stages rm, dpo and kto."""
    finetune = cfg.finetune
    precision = choose_precision(cfg.train)
    logger.info("Precision: %s", precision.reason)

    tokenizer = load_tokenizer(cfg.model)
    with main_process_first(cfg.train.ddp_timeout):
        data = prepare_preference(cfg, tokenizer)
    tokenizer.chat_template = data.template.source  # saved with the result, as for sft

    set_seed(cfg.train.seed)
    head = {"labels": (REWARD_LABEL,), "pad_token_id": tokenizer.pad_token_id}
    model = trainable_model(cfg, precision, **(head if finetune.stage == "rm" else {}))
    kind, args_kind, extra, collator = _trainer_parts(cfg, tokenizer.pad_token_id)
    train, evaluation = _rows_for(kind, data)
    logger.info("%s", _describe(cfg))
    args = training_arguments(
        cfg, precision, has_eval=evaluation is not None, kind=args_kind, model=model, **extra
    )
    trainer_kwargs: dict[str, Any] = {"args": args, "kind": kind}
    if kind in (DPO, KTO):
        trainer_kwargs["ref_model"] = _reference_model(cfg, precision)
    trainer = build_trainer(
        cfg,
        model,
        tokenizer,
        train,
        evaluation,
        collator,
        precision,
        observers,
        **trainer_kwargs,
    )
    _switch_off_for_reference(cfg, trainer.model)
    # The last validation is in the log already; do_eval repeats it into all_results.json.
    return train_and_save(cfg, trainer, final_eval=evaluation is not None and cfg.train.do_eval)


def _trainer_parts(cfg: RunConfig, pad_token_id: int) -> tuple[type, type, dict[str, Any], Any]:
    """The trainer class, its config class and settings, and the collator for the stage."""
    finetune = cfg.finetune
    common: dict[str, Any] = {
        "max_length": cfg.data.cutoff_len,
        "activation_checkpointing": cfg.train.gradient_checkpointing,  # trl defaults it on
    }
    if finetune.stage == "rm":
        return Reward, RewardConfig, common, RewardCollator(pad_token_id=pad_token_id)
    if finetune.stage == "kto":
        extra = {
            **common,
            "beta": finetune.pref_beta,
            "desirable_weight": finetune.kto_chosen_weight,
            "undesirable_weight": finetune.kto_rejected_weight,
            "train_sampling_strategy": "sequential",  # trl pairs KL partners in a fixed order
        }
        return KTO, KTOConfig, extra, DataCollatorForUnpairedPreference(pad_token_id=pad_token_id)
    old_style = {
        **common,
        "beta": finetune.pref_beta,
        "max_completion_length": cfg.data.cutoff_len,
    }
    padded = DPODataCollatorWithPadding(pad_token_id=pad_token_id)
    if finetune.pref_loss == "orpo":
        return ORPO, ORPOConfig, old_style, padded
    if finetune.pref_loss == "simpo":
        simpo = {
            **old_style,
            "loss_type": "simpo",
            "simpo_gamma": finetune.simpo_gamma,
            "cpo_alpha": finetune.pref_ftx,  # the SFT term, LLaMA-Factory's pref_ftx
        }
        return SimPO, CPOConfig, simpo, padded
    losses, weights = [finetune.pref_loss], [1.0]
    if finetune.pref_ftx:
        losses, weights = [*losses, "sft"], [1.0, finetune.pref_ftx]
    extra = {
        **common,
        "beta": finetune.pref_beta,
        "loss_type": losses,
        "loss_weights": weights,
        "label_smoothing": finetune.dpo_label_smoothing,
    }
    return DPO, DPOConfig, extra, DataCollatorForPreference(pad_token_id=pad_token_id)


def _rows_for(kind: type, data: PreferenceData) -> tuple[Any, Any]:
    """The rows in the form the trainer reads: ids as encoded, or (ORPO, SimPO) the padded
    prompt / chosen / rejected sequences with labels that trl's older trainers expect."""
    if kind not in (ORPO, SimPO):
        return data.train, data.eval
    convert = _old_style_row
    return (
        data.train.map(convert, remove_columns=data.train.column_names),
        data.eval.map(convert, remove_columns=data.eval.column_names) if data.eval else None,
    )


def _old_style_row(row: dict[str, Any]) -> dict[str, Any]:
    prompt = row["prompt_ids"]
    out: dict[str, Any] = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for name in ("chosen", "rejected"):
        ids = prompt + row[f"{name}_ids"]
        out[f"{name}_input_ids"] = ids
        out[f"{name}_attention_mask"] = [1] * len(ids)
        out[f"{name}_labels"] = [-100] * len(prompt) + row[f"{name}_ids"]
    return out


def _switch_off_for_reference(cfg: RunConfig, model: Any) -> None:
    """trl copies a PEFT model's adapter as the reference ("ref"). A new adapter starts as
    the identity, so the reference is the base with adapters off: the copy is dropped. One
    continued from adapter_name_or_path (an SFT adapter) stays: that is the reference."""
    peft_config = getattr(model, "peft_config", {})
    if cfg.model.adapter_name_or_path is None and "ref" in peft_config:
        model.delete_adapter("ref")


def _reference_model(cfg: RunConfig, precision: Precision) -> Any:
    """None when trl can use the policy itself with the adapter off (LoRA without
    ref_model), else a frozen model in the compute dtype."""
    finetune, model_args = cfg.finetune, cfg.model
    if finetune.ref_model is None and finetune.adapter:
        return None
    if finetune.ref_model is not None:
        model_args = model_args.model_copy(
            update={"model_name_or_path": finetune.ref_model, "adapter_name_or_path": None}
        )
    _check_same_vocabulary(cfg)
    reference: Any = load_model(model_args, dtype=precision.compute_dtype or torch.float32)
    if finetune.ref_model_adapters:
        reference = load_adapter(reference, finetune.ref_model_adapters, trainable=False)
    reference.requires_grad_(False)
    return reference.eval()


def _check_same_vocabulary(cfg: RunConfig) -> None:
    """Log-probabilities of the policy and the reference are compared token by token."""
    if cfg.finetune.ref_model is None:
        return
    policy = load_tokenizer(cfg.model)
    theirs = load_tokenizer(
        cfg.model.model_copy(update={"model_name_or_path": cfg.finetune.ref_model})
    )
    if policy.get_vocab() != theirs.get_vocab():
        raise ConfigError(
            f"ref_model: {cfg.finetune.ref_model} has a different tokenizer than "
            f"{cfg.model.model_name_or_path}; the reference must share the policy's vocabulary"
        )


def _describe(cfg: RunConfig) -> str:
    finetune = cfg.finetune
    if finetune.stage == "rm":
        return "Stage rm: a reward model scoring chosen above rejected (trl RewardTrainer)"
    if finetune.stage == "kto":
        return (
            f"Stage kto: beta {finetune.pref_beta}, weights good {finetune.kto_chosen_weight} "
            f"/ bad {finetune.kto_rejected_weight} (trl KTOTrainer)"
        )
    reference = (
        "none"
        if finetune.pref_loss in ("orpo", "simpo")
        else finetune.ref_model or "the starting model (adapter off)"
    )
    ftx = f", SFT loss x {finetune.pref_ftx}" if finetune.pref_ftx else ""
    return (
        f"Stage dpo: loss {finetune.pref_loss}, beta {finetune.pref_beta}{ftx}; "
        f"reference model: {reference}"
    )
