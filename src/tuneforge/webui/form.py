"""The Train tab's form as a flat config, and back.

The form shows the keys most runs change; every other key goes into a free YAML box, so a
loaded config keeps all of its settings. Values are checked by `tuneforge.config.load_config`,
`check_environment` and the dataset registry, the same checks as ``tuneforge train``, and each
message is placed under the field of the key it is about.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from tuneforge.config import check_environment, load_config
from tuneforge.config.schema import SECTIONS, field_owner
from tuneforge.data import registry
from tuneforge.errors import ConfigError, DataError, Problem, UserError

# Form keys that are not config keys: the mixed-precision choice and the free YAML box.
PRECISION, EXTRA = "precision", "extra"
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Keys that only some stages use, row by row with those stages: the form shows them, and
# writes them to the config, for those stages only (a saved sft config stays free of them).
STAGE_ROWS: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("dpo", "kto"), ("pref_beta", "ref_model", "ref_model_adapters")),
    (("dpo",), ("pref_loss", "pref_ftx", "simpo_gamma", "dpo_label_smoothing")),
    (("kto",), ("kto_chosen_weight", "kto_rejected_weight")),
)
STAGE_KEYS: Mapping[str, tuple[str, ...]] = {
    key: stages for stages, keys in STAGE_ROWS for key in keys
}

# The form's sections, row by row.
GROUPS: Mapping[str, tuple[tuple[str, ...], ...]] = {
    "model": (
        ("model_name_or_path", "stage", "finetuning_type"),
        ("quantization_bit", "template", "rope_scaling"),
    ),
    "data": (("dataset_dir", "dataset", "cutoff_len", "val_size", "max_samples"),),
    "training": (
        ("output_dir", "learning_rate", "num_train_epochs", "max_steps"),
        (
            "per_device_train_batch_size",
            "gradient_accumulation_steps",
            "lr_scheduler_type",
            PRECISION,
        ),
        ("logging_steps", "save_steps", "eval_steps"),
    ),
    "lora": (
        ("lora_rank", "lora_alpha", "lora_dropout", "lora_target"),
        ("use_rslora", "use_dora"),
    ),
    "preference": tuple(keys for _, keys in STAGE_ROWS),
    "extra": ((EXTRA,),),
}
FIELDS: tuple[str, ...] = tuple(key for rows in GROUPS.values() for row in rows for key in row)
# Optional choices whose empty value ("") means "not set": off, or the tokenizer's own template.
EMPTY_CHOICE = ("quantization_bit", "template", "rope_scaling")
# Config keys shown as one form field under another name.
SHOWN_AS: Mapping[str, str] = {"bf16": PRECISION, "fp16": PRECISION}


def schema_field(key: str) -> Any:
    """The pydantic field of config key `key`."""
    return SECTIONS[field_owner()[key]].model_fields[key]


def literal_choices(key: str) -> list[Any]:
    """The allowed values of a config key typed as a Literal (optional or not)."""
    annotation = schema_field(key).annotation
    if typing.get_origin(annotation) is typing.Literal:
        return list(typing.get_args(annotation))
    return [
        value
        for arg in typing.get_args(annotation)
        if typing.get_origin(arg) is typing.Literal
        for value in typing.get_args(arg)
    ]


def applies(key: str, stage: str | None) -> bool:
    """Whether form key `key` is used by `stage` (empty: the schema's default stage)."""
    return key not in STAGE_KEYS or (stage or schema_field("stage").default) in STAGE_KEYS[key]


def is_number(key: str) -> bool:
    """Whether a form key holds a number, typed as text so that empty means "not set"."""
    if key in (PRECISION, EXTRA):
        return False
    annotation = schema_field(key).annotation
    kinds = set(typing.get_args(annotation)) or {annotation}
    return bool(kinds & {int, float}) and bool not in kinds


def default_values() -> dict[str, Any]:
    """The form filled with the schema's defaults."""
    return from_config({})


def from_config(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Form values for a flat config (as ``RunConfig.flat(only_set=True)`` gives it); keys the
    form has no field for, or whose field the config's stage hides, go into the YAML box."""
    stage = flat.get("stage")
    values: dict[str, Any] = {}
    for key in FIELDS:
        if key in (PRECISION, EXTRA):
            continue
        default = schema_field(key).default
        value = flat.get(key, default) if applies(key, stage) else default
        if key == "dataset":
            values[key] = list(value or [])
        elif isinstance(value, list):
            values[key] = ", ".join(map(str, value))
        elif value is None:
            values[key] = "" if key in EMPTY_CHOICE or is_number(key) else None
        else:
            values[key] = str(value) if is_number(key) else value
    values[PRECISION] = (
        "bf16"
        if flat.get("bf16")
        else "fp16"
        if flat.get("fp16")
        else "fp32"
        if flat.get("bf16") is False
        else "auto"
    )
    others = {
        key: value
        for key, value in flat.items()
        if (key not in FIELDS and key not in SHOWN_AS) or not applies(key, stage)
    }
    values[EXTRA] = config_yaml(others) if others else ""
    return values


def to_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """The flat config the form describes: empty fields, and those the stage does not use,
    are left out (the defaults apply)."""
    config: dict[str, Any] = {}
    for key in FIELDS:
        value = values.get(key)
        if not applies(key, values.get("stage")):
            continue
        if key == PRECISION:
            config.update(
                {
                    "auto": {},
                    "fp32": {"bf16": False, "fp16": False},
                    "bf16": {"bf16": True},
                    "fp16": {"fp16": True},
                }[value or "auto"]
            )
        elif key == EXTRA:
            config.update(parse_extra(value or ""))
        elif isinstance(value, str) and value.strip():
            config[key] = _number(value.strip()) if is_number(key) else value.strip()
        elif value is not None and value != "" and value != []:
            config[key] = value
    return config


def _number(text: str) -> int | float | str:
    """A typed number as int or float; anything else is passed on for validation to name."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def config_yaml(config: Mapping[str, Any]) -> str:
    """The flat config as the YAML file ``tuneforge train`` reads."""
    return yaml.safe_dump(dict(config), sort_keys=False, allow_unicode=True)


def parse_extra(text: str) -> dict[str, Any]:
    """The YAML box: ``key: value`` lines."""
    try:
        data = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        raise ConfigError(
            f"{EXTRA}:{where} {getattr(exc, 'problem', None) or 'not valid YAML'}"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{EXTRA}: expected 'key: value' lines, e.g. early_stopping_steps: 3")
    return {str(key): value for key, value in data.items()}


def validate(values: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The flat config of the form and its problems by form field (none: it can be trained).

    The field ``""`` collects messages that name no field.
    """
    try:
        config = to_config(values)
    except ConfigError as exc:
        return {}, {EXTRA: exc.lines}
    stage = config.get("stage")
    try:
        cfg = load_config(config)
        check_environment(cfg)
    except ConfigError as exc:
        return config, problems_by_field(exc.problems, stage)
    if cfg.data.dataset:
        problems = _registry_problems(cfg.data.dataset, cfg.data.dataset_dir)
        return config, problems_by_field(problems, stage)
    return config, {}


def _registry_problems(names: list[str], dataset_dir: str) -> list[Problem]:
    """The dataset folder's problems (its dataset_info.json), or else those of the names."""
    try:
        registry.registered(dataset_dir)
    except DataError as exc:
        return [Problem("dataset_dir", line) for line in exc.lines]
    try:
        registry.resolve(names, dataset_dir)
    except DataError as exc:
        return [Problem("dataset", line) for line in exc.lines]
    return []


def error_by_field(exc: UserError, stage: str | None = None) -> dict[str, list[str]]:
    """`problems_by_field` of any error: a config error's keys, or no key (the general
    message) for the others."""
    if isinstance(exc, ConfigError):
        return problems_by_field(exc.problems, stage)
    return {"": exc.lines}


def problems_by_field(
    problems: Iterable[Problem], stage: str | None = None
) -> dict[str, list[str]]:
    """Put each message under the form field of its key: a field of its own (one that
    `stage` shows), the precision choice (bf16/fp16), the YAML box (any other key, known or
    not, where a hidden field's key is too), or ``""`` (no key)."""
    placed: dict[str, list[str]] = {}
    for problem in problems:
        key = problem.key
        shown = key in FIELDS and applies(key, stage)
        field = "" if key is None else key if shown else SHOWN_AS.get(key, EXTRA)
        placed.setdefault(field, []).append(problem.message)
    return placed
