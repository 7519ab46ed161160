"""The checks that involve several keys, from the config alone: no file is read and no
hardware probed, so a config is valid or not whatever machine reads it.

They run even when some keys failed their own field check: those keys are at their defaults
in the config they get, so a check that reads one of them is skipped rather than reporting a
problem the user's value may not have.
"""

from __future__ import annotations

from collections.abc import Callable, Set

from tuneforge.config.choices import BEST_MODEL_METRICS
from tuneforge.config.scale import scale_problems
from tuneforge.config.schema import RunConfig
from tuneforge.errors import Problem

# What metric_for_best_model may name, per stage (the others log eval_loss).
STAGE_METRICS = {
    "cls": BEST_MODEL_METRICS,
    "rm": ("eval_loss", "eval_accuracy"),
    "dpo": ("eval_loss", "eval_rewards/accuracies", "eval_rewards/margins"),
}
REFERENCE_FREE = ("orpo", "simpo")


def cross_problems(cfg: RunConfig, failed: Set[str] = frozenset()) -> list[Problem]:
    """Every failing cross-field check of `cfg`; `failed` are the keys whose own value was
    invalid, and a check that reads one of them is skipped."""
    problems: list[Problem] = []

    def valid(*keys: str) -> bool:
        return failed.isdisjoint(keys)

    def add(key: str, message: str) -> None:
        problems.append(Problem(key, message))

    train, data, finetune = cfg.train, cfg.data, cfg.finetune
    split = ("val_size", "eval_dataset")
    no_validation = not (data.val_size > 0 or data.eval_dataset)
    training = valid("do_train") and train.do_train
    lora = finetune.finetuning_type == "lora"
    if valid(*split) and data.val_size and data.eval_dataset:
        add("val_size", "val_size and eval_dataset are both set; use one of them")
    if valid("bf16", "fp16") and train.bf16 and train.fp16:
        add("bf16", "bf16 and fp16 are both true; choose one")
    if valid("early_stopping_steps", *split) and train.early_stopping_steps and no_validation:
        add(
            "early_stopping_steps",
            "early_stopping_steps needs validation data: set val_size (e.g. 0.1) or eval_dataset",
        )
    evaluates = train.eval_strategy in ("steps", "epoch")
    if valid("eval_strategy", *split) and evaluates and no_validation:
        add(
            "eval_strategy",
            f"eval_strategy={train.eval_strategy} needs validation data: set val_size or "
            f"eval_dataset",
        )
    predict_only = train.do_predict and "do_train" not in train.model_fields_set
    if training and valid("dataset", "dataset_dir", "do_predict") and not data.dataset:
        if predict_only:  # LLaMA-Factory's do_train defaults to false: a prediction config
            add(
                "do_train",
                "this config only predicts (do_predict: true, no dataset; LLaMA-Factory reads "
                "an unset do_train as false): run it with `tuneforge eval`, which generates "
                "and scores the answers, or set do_train: true and a dataset to train",
            )
        else:
            add(
                "dataset",
                f"dataset is required for training (names from "
                f"{data.dataset_dir}/dataset_info.json)",
            )
    adapter = cfg.model.adapter_name_or_path
    if training and valid("adapter_name_or_path", "finetuning_type") and adapter:
        if not finetune.adapter:
            add(
                "adapter_name_or_path",
                f"adapter_name_or_path continues an adapter and needs finetuning_type=lora or "
                f"oft (it is {finetune.finetuning_type})",
            )
    problems += _pissa_problems(cfg, valid)
    if valid("create_new_adapter", "adapter_name_or_path") and finetune.create_new_adapter:
        if not adapter:
            add(
                "create_new_adapter",
                "create_new_adapter needs adapter_name_or_path (the adapter to merge first)",
            )
        elif cfg.model.quantization_bit:
            add(
                "create_new_adapter",
                "create_new_adapter merges the adapter into the weights, which 4/8-bit "
                "weights cannot take; remove quantization_bit",
            )
        elif finetune.preference:
            add(
                "create_new_adapter",
                f"stage {finetune.stage} continues the adapter and keeps it as the reference; "
                f"remove create_new_adapter",
            )
    problems += _llama_pro_problems(cfg, valid)
    dora = "use_dora" if finetune.use_dora else "use_rslora" if finetune.use_rslora else None
    if valid("finetuning_type", "use_dora", "use_rslora") and dora and not lora:
        add(
            dora,
            f"use_dora/use_rslora need finetuning_type=lora (it is {finetune.finetuning_type})",
        )
    metrics = STAGE_METRICS.get(finetune.stage, ("eval_loss",))
    metric = train.metric_for_best_model
    logged = f"eval_{metric.removeprefix('eval_')}" in metrics
    if valid("stage", "metric_for_best_model") and not logged:
        add(
            "metric_for_best_model",
            f"metric_for_best_model={metric!r}: allowed for stage {finetune.stage}: "
            f"{', '.join(metrics)}",
        )
    if valid("stage", "packing") and finetune.stage == "cls" and cfg.packing:
        add("packing", "packing does not apply to stage cls (one text, one label)")
    if valid("stage", "packing") and finetune.preference and cfg.packing:
        add("packing", f"packing does not apply to stage {finetune.stage} (one pair, one row)")
    problems += _preference_problems(cfg, valid)
    problems += _classifier_problems(cfg, valid)
    problems += _optimizer_problems(cfg, valid)
    problems += _mixing_problems(cfg, valid)
    problems += _streaming_problems(cfg, valid)
    if (
        valid("tokenized_path", "stage")
        and data.tokenized_path
        and finetune.stage not in ("sft", "pt")
    ):
        add(
            "tokenized_path",
            f"tokenized_path applies to stages sft and pt (the stage is {finetune.stage})",
        )
    for key in ("use_dft_loss", "compute_accuracy"):
        if valid("stage", key) and getattr(finetune, key) and finetune.stage not in ("sft", "pt"):
            add(key, f"{key} applies to stages sft and pt (the stage is {finetune.stage})")
    if valid("stage", "label_names") and finetune.stage != "cls" and data.label_names:
        add("label_names", "label_names applies to stage cls only")
    if valid("do_predict", "stage") and train.do_predict and finetune.stage != "sft":
        add(
            "do_predict",
            "do_predict generates answers and needs stage sft; for cls, validation runs "
            "accuracy/F1 by itself",
        )
    return problems + scale_problems(cfg, valid)


def _llama_pro_problems(cfg: RunConfig, valid: Callable[..., bool]) -> list[Problem]:
    """use_llama_pro trains the layers `tuneforge expand` inserted, by freeze or LoRA; how
    many there are is freeze_trainable_layers (that it divides the layer count is checked
    with the model, in `models.adapters`)."""
    finetune = cfg.finetune
    if not (valid("use_llama_pro") and finetune.use_llama_pro):
        return []
    problems = []
    kind = finetune.finetuning_type
    if valid("finetuning_type") and kind not in ("freeze", "lora"):
        problems.append(
            Problem(
                "use_llama_pro",
                f"use_llama_pro trains the expanded layers and needs finetuning_type freeze or "
                f"lora (it is {kind})",
            )
        )
    layers = finetune.freeze_trainable_layers
    if valid("freeze_trainable_layers") and layers < 1:
        problems.append(
            Problem(
                "freeze_trainable_layers",
                f"freeze_trainable_layers={layers}: with use_llama_pro it is the number of "
                f"expanded layers (tuneforge expand --num-expand), 1 or more",
            )
        )
    return problems


def _preference_problems(cfg: RunConfig, valid: Callable[..., bool]) -> list[Problem]:
    finetune, train = cfg.finetune, cfg.train
    problems = []
    if valid("ref_model", "ref_model_adapters") and finetune.ref_model_adapters:
        if not finetune.ref_model:
            problems.append(
                Problem("ref_model_adapters", "ref_model_adapters needs ref_model (its base)")
            )
    reference_free = finetune.stage == "dpo" and finetune.pref_loss in REFERENCE_FREE
    if valid("ref_model", "pref_loss") and finetune.ref_model and reference_free:
        problems.append(
            Problem(
                "ref_model",
                f"pref_loss {finetune.pref_loss} uses no reference model; remove ref_model",
            )
        )
    if valid("ref_model", "stage") and finetune.ref_model and finetune.stage not in ("dpo", "kto"):
        problems.append(Problem("ref_model", "ref_model applies to stages dpo and kto only"))
    batch = train.per_device_train_batch_size
    if valid("stage", "per_device_train_batch_size") and finetune.stage == "kto" and batch < 2:
        problems.append(
            Problem(
                "per_device_train_batch_size",
                f"stage kto needs per_device_train_batch_size >= 2 (its KL estimate pairs "
                f"each prompt with another answer of the same batch); for the same effective "
                f"batch write per_device_train_batch_size: 2, gradient_accumulation_steps: "
                f"{max(1, train.gradient_accumulation_steps // 2)}",
            )
        )
    return problems


CLS_KEYS = ("cls_head_init", "cls_pooling", "cls_head_lr")


def _classifier_problems(cfg: RunConfig, valid: Callable[..., bool]) -> list[Problem]:
    """The classifier's own keys do nothing in another stage: say so rather than ignore them."""
    if not valid("stage") or cfg.finetune.stage == "cls":
        return []
    return [
        Problem(key, f"{key} applies to stage cls only (the stage is {cfg.finetune.stage})")
        for key in CLS_KEYS
        if valid(key) and getattr(cfg.finetune, key) is not None
    ]


def _pissa_problems(cfg: RunConfig, valid: Callable[..., bool]) -> list[Problem]:
    """PiSSA starts a new LoRA adapter by moving part of each weight into it."""
    finetune = cfg.finetune
    if not finetune.pissa_init or not valid("pissa_init"):
        return []
    problems = []
    if valid("finetuning_type") and finetune.finetuning_type != "lora":
        problems.append(
            Problem(
                "pissa_init",
                f"pissa_init needs finetuning_type=lora (it is {finetune.finetuning_type})",
            )
        )
    if valid("adapter_name_or_path") and cfg.model.adapter_name_or_path:
        problems.append(
            Problem(
                "pissa_init",
                "pissa_init starts a new adapter; remove adapter_name_or_path or pissa_init",
            )
        )
    implicit_reference = finetune.stage in ("dpo", "kto") and not finetune.ref_model
    reference_free = finetune.stage == "dpo" and finetune.pref_loss in REFERENCE_FREE
    if valid("stage", "ref_model") and implicit_reference and not reference_free:
        problems.append(
            Problem(
                "pissa_init",
                f"pissa_init changes the frozen weights, so they are no longer the reference "
                f"stage {finetune.stage} compares with; set ref_model to the base model",
            )
        )
    return problems


# The optimizers that train the weights themselves (a low-rank gradient, a block at a time).
FULL_WEIGHT_OPTIMIZERS = {"use_galore": "GaLore", "use_apollo": "APOLLO", "use_badam": "BAdam"}


def _optimizer_problems(cfg: RunConfig, valid: Callable[..., bool]) -> list[Problem]:
    """One optimizer per run, each with the finetuning type it is made for."""
    optimizer, kind = cfg.optimizer, cfg.finetune.finetuning_type
    chosen = [key for key in optimizer.chosen if valid(key)]
    problems = []
    if len(chosen) > 1:
        problems.append(
            Problem(chosen[1], f"{' and '.join(chosen)} each choose the optimizer; keep one")
        )
    if chosen and valid("optim") and "optim" in cfg.train.model_fields_set:
        problems.append(
            Problem("optim", f"optim and {chosen[0]} both choose the optimizer; keep one")
        )
    if "loraplus_lr_ratio" in chosen and valid("finetuning_type") and kind != "lora":
        problems.append(
            Problem(
                "loraplus_lr_ratio", f"loraplus_lr_ratio needs finetuning_type=lora (it is {kind})"
            )
        )
    for key, name in FULL_WEIGHT_OPTIMIZERS.items():
        allowed = ("full",) if key == "use_badam" else ("full", "freeze")
        if key in chosen and valid("finetuning_type") and kind not in allowed:
            problems.append(
                Problem(
                    key,
                    f"{key}: {name} trains the model's own weights; use finetuning_type="
                    f"{' or '.join(allowed)} (it is {kind})",
                )
            )
    layerwise = [
        key
        for key in ("galore_layerwise", "apollo_layerwise")
        if getattr(optimizer, key) and f"use_{key.split('_')[0]}" in chosen
    ]
    accumulates = cfg.train.gradient_accumulation_steps > 1
    if layerwise and accumulates and valid("gradient_accumulation_steps"):
        problems.append(
            Problem(
                layerwise[0],
                f"{layerwise[0]} updates each layer during backward and cannot accumulate "
                f"gradients; set gradient_accumulation_steps: 1 or {layerwise[0]}: false",
            )
        )
    if "use_apollo" in chosen and optimizer.apollo_scale_front:
        problems.append(
            Problem(
                "apollo_scale_front",
                "apollo_scale_front is not offered by transformers' APOLLO optimizer; remove it",
            )
        )
    return problems


def _mixing_problems(cfg: RunConfig, valid: Callable[..., bool]) -> list[Problem]:
    """interleave_probs gives one chance per training dataset, for an interleave strategy."""
    data = cfg.data
    if data.interleave_probs is None or not valid("interleave_probs", "mix_strategy", "dataset"):
        return []
    if data.mix_strategy == "concat":
        return [
            Problem(
                "interleave_probs",
                "interleave_probs needs mix_strategy interleave_under or interleave_over",
            )
        ]
    count = len(data.dataset or [])
    if len(data.interleave_probs) != count:
        return [
            Problem(
                "interleave_probs",
                f"interleave_probs has {len(data.interleave_probs)} chances for {count} "
                f"dataset(s); give one per dataset, in the order of dataset",
            )
        ]
    return []


def _streaming_problems(cfg: RunConfig, valid: Callable[..., bool]) -> list[Problem]:
    """A stream is read once, in order, and its length is unknown until it ends: whatever
    needs the whole dataset up front (a step count from epochs, a share of it, sorting,
    saving it tokenised) cannot be had."""
    data, train, stage = cfg.data, cfg.train, cfg.finetune.stage
    if not valid("streaming"):
        return []
    if not data.streaming:
        # A run's saved config holds every key, buffer_size at its default included.
        default = type(data).model_fields["buffer_size"].default
        if valid("buffer_size") and data.buffer_size != default:
            return [Problem("buffer_size", "buffer_size applies with streaming: true only")]
        return []
    problems = []
    if valid("stage") and stage not in ("sft", "pt"):
        problems.append(
            Problem("streaming", f"streaming applies to stages sft and pt (the stage is {stage})")
        )
    if valid("max_steps", "do_train") and train.do_train and train.max_steps <= 0:
        problems.append(
            Problem(
                "max_steps",
                "streaming needs max_steps > 0: a stream has no length, so num_train_epochs "
                "cannot be turned into steps (LLaMA-Factory requires the same)",
            )
        )
    if valid("tokenized_path") and data.tokenized_path:
        problems.append(
            Problem(
                "tokenized_path",
                "tokenized_path saves the whole tokenised dataset, which a stream never "
                "holds; remove tokenized_path or streaming",
            )
        )
    if valid("val_size") and 0 < data.val_size < 1:
        problems.append(
            Problem(
                "val_size",
                f"val_size={data.val_size:g} is a share, and a stream's length is unknown; "
                f"with streaming give a whole number of rows (taken from the start of the "
                f"stream), or use eval_dataset",
            )
        )
    if valid("group_by_length") and train.group_by_length:
        problems.append(
            Problem(
                "group_by_length",
                "group_by_length sorts the whole dataset by length, which a stream cannot; "
                "remove group_by_length or streaming",
            )
        )
    return problems
