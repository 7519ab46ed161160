"""Build the transformers Trainer for a run: arguments, collator, callbacks, checkpoints.

tuneforge adds three things to the stock Trainer: checkpoints marked complete only once
written (see `checkpoint`), a count of useful (non-padding) tokens for honest tokens/s, and
early stopping that lines up validation and saving by itself and keeps the best model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_callback import ProgressCallback as HFProgressCallback

from tuneforge.config.scale import read_engine_config
from tuneforge.config.schema import OptimArgs, RunConfig
from tuneforge.data.streaming import TrainStream
from tuneforge.models.precision import Precision
from tuneforge.training import checkpoint
from tuneforge.training.callbacks import InterruptCallback, JsonlLogCallback, ProgressCallback
from tuneforge.training.distributed import batch_advice, world_size
from tuneforge.training.fused_loss import CHUNK_ROWS, causal_lm_loss
from tuneforge.training.optimizers import check_installed, custom_optimizer, low_rank_arguments

logger = logging.getLogger(__name__)

REAL_TOKENS = "num_real_tokens"
REAL_SAMPLES = "num_real_samples"


@runtime_checkable
class CountsSamples(Protocol):
    """A callback that wants each batch's sample count (a packed row holds several); the
    training monitor is one. Defined here so training never imports the monitor."""

    def add_samples(self, count: int) -> None: ...


# Builds a run's observing callbacks (monitoring, sinks) once the stage knows whether the run
# validates; the caller passes it in, so training does not depend on who observes it.
CallbackFactory = Callable[[RunConfig, bool], Sequence[TrainerCallback]]


# The mixin goes before a Trainer class in the bases; type checkers see it as one.
if TYPE_CHECKING:
    _TrainerBase = Trainer
else:
    _TrainerBase = object


class TuneforgeMixin(_TrainerBase):
    """What tuneforge adds to a transformers Trainer (the stock one, or one of trl's):
    complete-or-not checkpoints, a useful-token count, Ctrl-C, and the fused loss."""

    def __init__(
        self,
        *args: Any,
        data_fingerprint: str,
        save_total_limit: int | None,
        interrupt: InterruptCallback | None = None,
        fused_loss: bool = False,
        dft: bool = False,
        optimizer_args: OptimArgs | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.optimizer_args = optimizer_args
        self.dft = dft
        # A wrapped model (DDP, FSDP, DeepSpeed) must run its own forward to sync gradients.
        wrapped = self.args.world_size > 1 or bool(self.args.deepspeed or self.args.fsdp)
        self.fused_loss = (
            fused_loss and not wrapped and self.model is not None and fused_loss_fits(self.model)
        )
        if fused_loss and wrapped:
            logger.info("Loss: the model's own (the fused loss runs in single-process runs)")
        if self.fused_loss:
            logger.info(
                "Loss: fused linear + cross-entropy, %d positions at a time (the logits are "
                "never all in memory; fused_loss: false for the model's own)",
                CHUNK_ROWS,
            )
        self.data_fingerprint = data_fingerprint
        self.parameter_count: int | None = None
        self.keep_checkpoints = save_total_limit
        self.interrupt = interrupt
        self.sample_counters = [
            cb for cb in self.callback_handler.callbacks if isinstance(cb, CountsSamples)
        ]

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C (or the WebUI's Stop) ended the last ``train()`` early."""
        return self.interrupt is not None and self.interrupt.requested

    def training_step(
        self, model: torch.nn.Module, inputs: dict[str, Any], num_items_in_batch: Any = None
    ) -> torch.Tensor:
        tokens = int(inputs.pop(REAL_TOKENS, 0))
        if self.args.world_size > 1:  # every process's share, so tokens/s is the whole run's
            tokens = int(
                self.accelerator.reduce(
                    torch.tensor(tokens, device=self.args.device), reduction="sum"
                )
            )
        self.state.num_input_tokens_seen += tokens
        samples = int(inputs.pop(REAL_SAMPLES, 0))
        for counter in self.sample_counters:
            counter.add_samples(samples)
        return super().training_step(model, inputs, num_items_in_batch)

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> Any:
        inputs.pop(REAL_TOKENS, None)
        inputs.pop(REAL_SAMPLES, None)
        if self.fused_loss and prediction_loss_only and "labels" in inputs:
            with torch.no_grad(), self.compute_loss_context_manager():
                return self.compute_loss(model, inputs).detach(), None, None
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        """With `fused_loss`, the causal-LM loss from the decoder's hidden states through
        `linear_cross_entropy`, so the logits are never materialised (see fused_loss.py);
        the same value as the model's own loss, including its scaling across processes."""
        if not self.fused_loss or return_outputs or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        causal = _causal_lm(self.accelerator.unwrap_model(model))
        labels = inputs["labels"]
        features = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = causal.get_decoder()(**features, use_cache=False).last_hidden_state
        weight = causal.get_output_embeddings().weight
        loss = causal_lm_loss(hidden, weight, labels, num_items_in_batch, dft=self.dft)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes  # as Trainer.compute_loss scales it
        return loss

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's 6 x tokens x parameters, with the parameters counted once: the stock
        method walks every parameter at every step (~40 ms a step for the default model)."""
        if self.parameter_count is None:
            count = getattr(self.model, "num_parameters", None)
            self.parameter_count = count(exclude_embeddings=True) if callable(count) else 0
        ids = inputs.get("input_ids")
        return 6 * ids.numel() * self.parameter_count if ids is not None else 0

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        """The optimizer the config's keys name (LoRA+, BAdam, Adam-mini, Muon), else the
        Trainer's own choice from ``optim`` (GaLore and APOLLO among them)."""
        trained = self.model if model is None else model
        if self.optimizer is None and self.optimizer_args is not None and trained is not None:
            decay = set(self.get_decay_parameter_names(trained))
            self.optimizer = custom_optimizer(self.optimizer_args, trained, self.args, decay)
        return super().create_optimizer(model)

    def _save_checkpoint(self, model: torch.nn.Module, trial: Any) -> None:
        run_dir = Path(self._get_output_dir(trial=trial))
        folder = run_dir / f"checkpoint-{self.state.global_step}"
        if self.args.should_save:  # a rewritten checkpoint is incomplete until marked again
            checkpoint.unmark(folder)
        self.accelerator.wait_for_everyone()
        super()._save_checkpoint(model, trial)
        self.accelerator.wait_for_everyone()  # every rank's shards are written before the mark
        if not self.args.should_save:
            return
        checkpoint.mark_complete(
            folder,
            step=self.state.global_step,
            fingerprint=self.data_fingerprint,
            processes=self.args.world_size,
        )
        best = self.state.best_model_checkpoint
        checkpoint.rotate(run_dir, self.keep_checkpoints, Path(best) if best else None)


class TuneforgeTrainer(TuneforgeMixin, Trainer):
    """The stock Trainer with tuneforge's additions (sft, pt, cls)."""


def _causal_lm(model: torch.nn.Module) -> Any:
    """The transformers causal LM inside a (peft-wrapped) model."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def fused_loss_fits(model: torch.nn.Module) -> bool:
    """The fused loss replaces a plain linear head over the decoder's last hidden state: true
    for transformers' causal LMs (Llama, Qwen, Mistral, ...), not for classifiers or models
    whose head does more (logit soft-capping, scaling)."""
    causal = _causal_lm(model)
    config = getattr(causal, "config", None)
    head = causal.get_output_embeddings() if hasattr(causal, "get_output_embeddings") else None
    plain_head = isinstance(head, torch.nn.Linear) and head.bias is None
    extras = any(
        getattr(config, name, None) not in (None, 1.0)
        for name in ("final_logit_softcapping", "logit_scale", "logits_scaling")
    )
    return plain_head and not extras and hasattr(causal, "get_decoder")


def count_real_tokens(collate: Callable[[list[dict]], dict]) -> Callable[[list[dict]], dict]:
    """Wrap a collator so each batch carries how many of its tokens are not padding, and how
    many samples it holds (a packed row holds one per restart of its position_ids)."""

    def collate_and_count(features: list[dict]) -> dict:
        batch = collate(features)
        batch[REAL_TOKENS] = sum(useful_tokens(f) for f in features)
        batch[REAL_SAMPLES] = sum(
            list(f["position_ids"]).count(0) if "position_ids" in f else 1 for f in features
        )
        return batch

    return collate_and_count


def useful_tokens(row: Mapping[str, Any]) -> int:
    """The tokens one row puts through the model: a preference pair runs its prompt once
    per answer, a kto row once more against another row's answer (its KL term)."""
    if "input_ids" in row:
        return len(row["input_ids"])
    if "chosen_input_ids" in row:  # the rows of trl's older trainers (ORPO, CPO)
        return len(row["chosen_input_ids"]) + len(row["rejected_input_ids"])
    if "prompt_ids" not in row:  # rm: whole sequences
        return len(row["chosen_ids"]) + len(row["rejected_ids"])
    prompt = len(row["prompt_ids"])
    if "chosen_ids" in row:
        return 2 * prompt + len(row["chosen_ids"]) + len(row["rejected_ids"])
    kl = len(row.get("KL_completion_ids", ()))
    return prompt + len(row["completion_ids"]) + (prompt + kl if kl else 0)


def training_arguments(
    cfg: RunConfig,
    precision: Precision,
    *,
    has_eval: bool,
    kind: type[TrainingArguments] = TrainingArguments,
    model: torch.nn.Module | None = None,
    **extra: Any,
) -> TrainingArguments:
    """Translate the run config into transformers' TrainingArguments, or into `kind` (one
    of trl's configs, which extend them) with its own `extra` settings (which win). With the
    `model`, GaLore and APOLLO name the layers they project."""
    t = cfg.train
    check_installed(cfg.optimizer)
    eval_strategy = (t.eval_strategy or "steps") if has_eval else "no"
    eval_steps = t.eval_steps or t.logging_steps
    save_strategy, save_steps = t.save_strategy, t.save_steps
    early = bool(t.early_stopping_steps) and eval_strategy != "no"
    if early:
        save_strategy, save_steps = eval_strategy, eval_steps
        logger.info(
            "Early stopping after %d validations without improvement; validating and "
            "saving every %s, keeping the best checkpoint",
            t.early_stopping_steps,
            f"{eval_steps} steps" if eval_strategy == "steps" else "epoch",
        )
    gpu = torch.cuda.is_available()
    settings: dict[str, Any] = dict(
        output_dir=t.output_dir,
        do_train=t.do_train,
        do_eval=has_eval,
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        warmup_steps=t.warmup_steps if t.warmup_steps else t.warmup_ratio,
        max_grad_norm=t.max_grad_norm,
        weight_decay=t.weight_decay,
        neftune_noise_alpha=t.neftune_noise_alpha,  # transformers' hook, on in train() only
        optim=t.optim,
        bf16=precision.bf16,
        fp16=precision.fp16,
        use_cpu=not gpu,
        ddp_backend=("nccl" if gpu else "gloo") if world_size() > 1 else None,
        ddp_find_unused_parameters=False,  # every trainable weight takes part in every step
        deepspeed=read_engine_config("deepspeed", t.deepspeed) if t.deepspeed else None,
        fsdp=t.fsdp or None,  # HF takes True too (its docs say so)
        fsdp_config=read_engine_config("fsdp_config", t.fsdp_config) if t.fsdp_config else None,
        use_liger_kernel=t.enable_liger_kernel,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # a NaN loss must reach the monitor, which stops the run
        eval_strategy=eval_strategy,
        eval_steps=eval_steps if eval_strategy == "steps" else None,
        save_strategy=save_strategy,
        save_steps=save_steps,
        save_total_limit=None,  # tuneforge rotates, counting complete checkpoints only
        save_only_model=t.save_only_model,
        load_best_model_at_end=early,
        metric_for_best_model=t.metric_for_best_model if early else None,
        greater_is_better=not t.metric_for_best_model.endswith("loss") if early else None,
        seed=t.seed,
        data_seed=t.seed,
        report_to="none",  # the TrainingMonitor writes to tensorboard/wandb/mlflow itself
        dataloader_num_workers=t.dataloader_num_workers,
        ddp_timeout=t.ddp_timeout,
        remove_unused_columns=False,
        disable_tqdm=True,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",
    )
    if model is not None:
        settings.update(low_rank_arguments(cfg.optimizer, model))
    return kind(**{**settings, **extra})


def build_trainer(
    cfg: RunConfig,
    model: torch.nn.Module,
    tokenizer: Any,
    train_dataset: Any,
    eval_dataset: Any,
    collator: Callable,
    precision: Precision,
    observers: CallbackFactory,
    compute_metrics: Callable | None = None,
    *,
    args: TrainingArguments | None = None,
    kind: type[TuneforgeMixin] = TuneforgeTrainer,
    **trainer_kwargs: Any,
) -> Any:
    """The configured trainer; callers only call ``.train()`` and save. `observers` builds
    the monitoring callbacks; `compute_metrics` adds metrics to every validation (stage cls:
    accuracy, F1, ...). The preference stages pass trl's trainer (with tuneforge's mixin) as
    `kind`, its config as `args`, and its own arguments (a reference model) as keywords."""
    args = args or training_arguments(
        cfg, precision, has_eval=eval_dataset is not None, model=model
    )
    logger.info("%s", batch_advice(cfg.train, args.world_size))
    # The observers first: they add their values to each log entry before the others see it.
    interrupt = InterruptCallback()
    callbacks = [
        *observers(cfg, eval_dataset is not None),
        ProgressCallback(),
        JsonlLogCallback(cfg.train.output_dir),
        interrupt,
    ]
    if args.load_best_model_at_end:
        callbacks.append(
            EarlyStoppingCallback(early_stopping_patience=cfg.train.early_stopping_steps or 1)
        )
    trainer = kind(
        model=model,
        args=args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        data_collator=count_real_tokens(collator),
        processing_class=tokenizer,
        callbacks=callbacks,
        compute_metrics=compute_metrics,
        data_fingerprint=checkpoint.data_fingerprint(row_lengths(train_dataset)),
        save_total_limit=cfg.train.save_total_limit,
        interrupt=interrupt,
        fused_loss=cfg.train.fused_loss
        and not cfg.train.enable_liger_kernel
        and kind is TuneforgeTrainer,
        dft=cfg.finetune.use_dft_loss,
        optimizer_args=cfg.optimizer,
        **trainer_kwargs,
    )
    trainer.remove_callback(HFProgressCallback)
    trainer.remove_callback(PrinterCallback)
    return trainer


def row_lengths(rows: Any) -> list[int]:
    """Each training row's token count, the run's data fingerprint for resuming (a stream's
    first rows: the rest is not read before training)."""
    if isinstance(rows, TrainStream):
        return list(rows.head_lengths)
    if "input_ids" in rows.column_names:
        return [len(ids) for ids in rows["input_ids"]]
    return [useful_tokens(row) for row in rows]
