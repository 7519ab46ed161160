"""Read a run config from YAML plus ``key=value`` overrides and validate it all at once.

Every problem is collected and reported together, one line each, naming the key the user
typed: unknown keys get a "did you mean", old LLaMA-Factory names are mapped to the new ones
with a note, and LLaMA-Factory features tuneforge does not have are named as such.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tuneforge.config.choices import BEST_MODEL_METRICS, TEMPLATE_NAMES
from tuneforge.config.scale import missing_extra, scale_problems
from tuneforge.config.schema import SECTIONS, RunConfig, field_owner
from tuneforge.config.yamlerror import yaml_error
from tuneforge.errors import ConfigError
from tuneforge.userfiles import kind_of, read_utf8

logger = logging.getLogger(__name__)

# Old LLaMA-Factory / transformers names -> current names.
RENAMED_KEYS: Mapping[str, str] = {
    "checkpoint_dir": "adapter_name_or_path",
    "num_layer_trainable": "freeze_trainable_layers",
    "name_module_trainable": "freeze_trainable_modules",
    "evaluation_strategy": "eval_strategy",
    "prompt_template": "template",
    "max_length": "cutoff_len",
}

# LLaMA-Factory keys whose meaning changed shape; each needs a sentence, not a rename.
REPLACED_KEYS: Mapping[str, str] = {
    "max_source_length": "replaced by cutoff_len (prompt and response together)",
    "max_target_length": "replaced by cutoff_len (prompt and response together)",
    "predict_with_generate": "do_predict always generates; remove the key",
}

# LLaMA-Factory keys for features tuneforge does not have (yet).
UNSUPPORTED_KEYS: frozenset[str] = frozenset(
    {
        "use_unsloth",
        "use_unsloth_gc",
        "pissa_init",
        "pissa_iter",
        "pissa_convert",
        "loraplus_lr_ratio",
        "loraplus_lr_embedding",
        "use_galore",
        "use_badam",
        "use_apollo",
        "use_llama_pro",
        "use_adam_mini",
        "use_muon",
        "pref_beta",
        "pref_loss",
        "pref_ftx",
        "reward_model",
        "reward_model_type",
        "streaming",
        "tokenized_path",
        "neat_packing",
        "mix_strategy",
        "interleave_probs",
        "buffer_size",
        "image_max_pixels",
        "image_min_pixels",
        "video_max_pixels",
        "video_fps",
        "freeze_vision_tower",
        "freeze_multi_modal_projector",
        "train_mm_proj_only",
        "shift_attn",
        "mixture_of_depths",
        "neftune_noise_alpha",
        "compute_accuracy",
        "resize_vocab",
        "upcast_layernorm",
        "upcast_lmhead_output",
        "moe_aux_loss_coef",
        "export_dir",
        "export_size",
        "export_quantization_bit",
        "infer_backend",
        "vllm_maxlen",
        "print_param_status",
        "create_new_adapter",
        "lora_bf16_mode",
        "pure_bf16",
        "use_reentrant_gc",
    }
)

UNSUPPORTED_STAGES = {"rm", "ppo", "dpo", "kto", "orpo", "simpo"}

# What a ``key=null`` override leaves: the key unset, whatever the YAML file said.
UNSET: Any = object()


def load_config(
    source: str | Path | Mapping[str, Any] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
) -> RunConfig:
    """Build a validated `RunConfig` from a YAML path or a flat dict, plus overrides.

    Raises `ConfigError` listing every problem found, one line each.
    """
    origin = "config"
    raw: dict[str, Any] = {}
    if isinstance(source, Mapping):
        raw = dict(source)
    elif source is not None:
        origin = str(source)
        raw = _read_yaml(Path(source))
    raw.update(_parse_overrides(overrides) if not isinstance(overrides, Mapping) else overrides)
    return _validate(raw, origin)


def _read_yaml(path: Path) -> dict[str, Any]:
    kind = kind_of(path)
    if kind == "folder":
        raise ConfigError(f"{path}: is a folder; give the YAML config file")
    if kind is None:
        raise ConfigError(f"{path}: config file not found")
    text = read_utf8(path, ConfigError)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line, problem = yaml_error(exc, text)
        raise ConfigError(f"{path}{f':{line}' if line else ''}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a config") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of key: value lines, got {type(data).__name__}"
        )
    return data


def _parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``key=value`` with the value read as YAML; ``key=null`` (or ``key=``) unsets the key,
    so the schema's default applies as if the YAML file had not set it."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected key=value, e.g. learning_rate=2e-4")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"override {item!r}: the value is not valid YAML "
                f"({yaml_error(exc, value)[1]}); quote it, or write a list as "
                f"a,b or [a, b]"
            ) from None
        except RecursionError:
            raise ConfigError(f"override of {key!r}: the value is nested too deeply") from None
        out[key.strip()] = UNSET if parsed is None else parsed
    return out


def _validate(raw: dict[str, Any], origin: str) -> RunConfig:
    problems: list[str] = []
    owner = field_owner()
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in raw.items():
        key = str(key)
        if key == "disable_gradient_checkpointing":
            value = value if value is UNSET else not value
            logger.warning(
                "%s: disable_gradient_checkpointing is the LLaMA-Factory name; "
                "using gradient_checkpointing=%s",
                origin,
                value,
            )
            key = "gradient_checkpointing"
        elif key in RENAMED_KEYS:
            logger.warning(
                "%s: '%s' is the old name of '%s'; using it as that", origin, key, RENAMED_KEYS[key]
            )
            key = RENAMED_KEYS[key]
        if key in owner and value is UNSET:
            sections[owner[key]].pop(key, None)
        elif key in owner:
            sections[owner[key]][key] = value
        elif key in REPLACED_KEYS:
            problems.append(f"{origin}: '{key}' is no longer used: {REPLACED_KEYS[key]}")
        elif key in UNSUPPORTED_KEYS:
            problems.append(
                f"{origin}: '{key}' (a LLaMA-Factory feature) is not supported by "
                f"tuneforge yet; remove the key"
            )
        else:
            problems.append(f"{origin}: unknown key {key!r}{_did_you_mean(key, owner)}")

    stage = sections["finetune"].get("stage")
    if isinstance(stage, str) and stage in UNSUPPORTED_STAGES:
        problems.append(
            f"{origin}: stage '{stage}' is not supported by tuneforge yet; allowed: sft, pt, cls"
        )
        sections["finetune"].pop("stage")

    built: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        try:
            built[name] = model(**sections[name])
        except ValidationError as exc:
            problems.extend(_describe(exc, origin))
    if problems:
        raise ConfigError(*problems)
    config = RunConfig(**built)
    problems.extend(_cross_checks(config, origin))
    if problems:
        raise ConfigError(*problems)
    return config


def _did_you_mean(key: str, owner: Mapping[str, str]) -> str:
    known = list(owner) + list(RENAMED_KEYS)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f"; did you mean '{RENAMED_KEYS.get(close[0], close[0])}'?" if close else ""


def _describe(exc: ValidationError, origin: str) -> list[str]:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"])
        value = err.get("input")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            message = "allowed: " + message.removeprefix("Input should be ").replace("'", "")
        lines.append(f"{origin}: {key}={value!r}: {message}")
    return lines


def _cross_checks(cfg: RunConfig, origin: str) -> list[str]:
    """Checks that involve several keys; every failing one is returned."""
    problems = []
    train, data, finetune = cfg.train, cfg.data, cfg.finetune
    has_validation = data.val_size > 0 or bool(data.eval_dataset)
    if data.val_size and data.eval_dataset:
        problems.append(f"{origin}: val_size and eval_dataset are both set; use one of them")
    if data.template is not None and data.template not in TEMPLATE_NAMES:
        problems.append(
            f"{origin}: template={data.template!r}: allowed: "
            f"{', '.join(TEMPLATE_NAMES)}, or leave it empty for the tokenizer's own"
        )
    if train.bf16 and train.fp16:
        problems.append(f"{origin}: bf16 and fp16 are both true; choose one")
    if train.early_stopping_steps and not has_validation:
        problems.append(
            f"{origin}: early_stopping_steps needs validation data: "
            f"set val_size (e.g. 0.1) or eval_dataset"
        )
    if train.eval_strategy in ("steps", "epoch") and not has_validation:
        problems.append(
            f"{origin}: eval_strategy={train.eval_strategy} needs validation data: "
            f"set val_size or eval_dataset"
        )
    if train.do_train and not data.dataset:
        problems.append(
            f"{origin}: dataset is required for training "
            f"(names from {data.dataset_dir}/dataset_info.json)"
        )
    if train.do_train and cfg.model.adapter_name_or_path and finetune.finetuning_type != "lora":
        problems.append(
            f"{origin}: adapter_name_or_path continues a LoRA adapter and needs "
            f"finetuning_type=lora (it is {finetune.finetuning_type})"
        )
    if finetune.finetuning_type != "lora" and (finetune.use_dora or finetune.use_rslora):
        problems.append(
            f"{origin}: use_dora/use_rslora need finetuning_type=lora "
            f"(it is {finetune.finetuning_type})"
        )
    metrics = BEST_MODEL_METRICS if finetune.stage == "cls" else ("eval_loss",)
    if "eval_" + train.metric_for_best_model.removeprefix("eval_") not in metrics:
        problems.append(
            f"{origin}: metric_for_best_model={train.metric_for_best_model!r}: "
            f"allowed for stage {finetune.stage}: {', '.join(metrics)}"
        )
    if finetune.stage == "cls" and cfg.packing:
        problems.append(f"{origin}: packing does not apply to stage cls (one text, one label)")
    if finetune.stage != "cls" and data.label_names:
        problems.append(f"{origin}: label_names applies to stage cls only")
    if train.do_predict and finetune.stage != "sft":
        problems.append(
            f"{origin}: do_predict generates answers and needs stage sft; for cls, "
            f"validation runs accuracy/F1 by itself"
        )
    problems.extend(scale_problems(cfg, origin))
    if train.optim == "adamw_bnb_8bit":
        missing = missing_extra("optim=adamw_bnb_8bit", "bitsandbytes", "qlora")
        problems.extend([f"{origin}: {missing}"] if missing else [])
    for reporter in ("wandb", "mlflow"):
        if reporter in train.report_to:
            missing = missing_extra(f"report_to={reporter}", reporter, "monitor")
            problems.extend([f"{origin}: {missing}"] if missing else [])
    return problems


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved flat config, the form users write and `load_config` reads back."""
    Path(path).write_text(
        yaml.safe_dump(cfg.flat(), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
