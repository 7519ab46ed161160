"""Read a run config from YAML plus ``key=value`` overrides and validate it all at once.

Every problem is collected and reported together, one line each, naming the key the user
typed: unknown keys get a "did you mean", old LLaMA-Factory names are mapped to the new ones
with a note, and LLaMA-Factory features tuneforge does not have are named as such. The
validation reads no file and probes no hardware (`config.environment` does, for the commands
that run a config), and `replace` changes a config through the same validation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from tuneforge.config.checks import cross_problems
from tuneforge.config.deploy_args import in_training_config
from tuneforge.config.llamafactory_keys import (
    FIXED_KEYS,
    RENAMED_KEYS,
    REPLACED_KEYS,
    UNSUPPORTED_KEYS,
)
from tuneforge.config.schema import SECTIONS, RunConfig, field_owner
from tuneforge.config.yamlerror import yaml_error
from tuneforge.errors import ConfigError, Problem
from tuneforge.messages import did_you_mean
from tuneforge.userfiles import kind_of, read_utf8

logger = logging.getLogger(__name__)

# What a ``key=null`` override leaves: the key unset, whatever the YAML file said.
UNSET: Any = object()

SectionT = TypeVar("SectionT", bound=BaseModel)


__all__ = ["FIXED_KEYS", "RENAMED_KEYS", "REPLACED_KEYS", "UNSUPPORTED_KEYS", "load_config"]


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


def replace(cfg: RunConfig, **changes: Any) -> RunConfig:
    """`cfg` with the flat `changes` (``replace(cfg, learning_rate=2e-4)``), validated as a
    whole like a loaded config: configs are frozen, and this is the one way to change one."""
    return _validate({**cfg.flat(only_set=True), **changes}, "config")


def validate_section(model: type[SectionT], values: Mapping[str, Any]) -> SectionT:
    """One section on its own (a request's generation settings), with the messages a whole
    config gets for the same values."""
    section, problems = _section(model, values)
    if problems:
        raise ConfigError(*problems, origin="config")
    return section


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
        parsed = parse_value(value, "override", key)
        out[key.strip()] = UNSET if parsed is None else parsed
    return out


def parse_value(value: str, label: str, key: str) -> Any:
    """One value typed on the command line (`label` says where: an override, a sweep's grid),
    read as YAML; one line naming it when it is not."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"{label} {f'{key}={value}'!r}: the value is not valid YAML "
            f"({yaml_error(exc, value)[1]}); quote it, or write a list as a,b or [a, b]"
        ) from None
    except RecursionError:
        raise ConfigError(f"{label} of {key!r}: the value is nested too deeply") from None


def _validate(raw: dict[str, Any], origin: str) -> RunConfig:
    problems: list[Problem] = []
    owner = field_owner()
    sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
    for key, value in raw.items():
        key = str(key)
        if value is UNSET and (
            key in UNSUPPORTED_KEYS or key in REPLACED_KEYS or key in FIXED_KEYS
        ):
            continue  # ``key=null`` takes out a LLaMA-Factory key the file has
        if key == "disable_gradient_checkpointing":
            value = value if value is UNSET else not value
            logger.warning(
                "%s: disable_gradient_checkpointing is the LLaMA-Factory name; "
                "using gradient_checkpointing=%s",
                origin,
                value,
            )
            key = "gradient_checkpointing"
        elif key == "pure_bf16":
            if value is False or value is UNSET:
                continue  # LLaMA-Factory's default: says nothing about precision
            logger.warning(
                "%s: pure_bf16 is LLaMA-Factory's bf16 weights without autocast; tuneforge "
                "keeps float32 master weights and computes in bf16 (more memory, the same "
                "arithmetic): using bf16=true",
                origin,
            )
            key = "bf16"
        elif key == "neat_packing":
            if value is False or value is UNSET:
                continue  # LLaMA-Factory's default: says nothing about packing
            logger.warning(
                "%s: neat_packing is LLaMA-Factory's packing without attention across samples, "
                "which is what tuneforge's packing does; using packing=%s",
                origin,
                value,
            )
            key = "packing"
        elif key in RENAMED_KEYS:
            logger.warning(
                "%s: '%s' is the old name of '%s'; using it as that", origin, key, RENAMED_KEYS[key]
            )
            key = RENAMED_KEYS[key]
        if key in owner and value is UNSET:
            sections[owner[key]].pop(key, None)
        elif key in owner:
            sections[owner[key]][key] = value
        elif key in FIXED_KEYS:
            allowed, reason = FIXED_KEYS[key]
            if value is not UNSET and value not in allowed:
                shown = " or ".join(str(v).lower() for v in allowed)
                problems.append(Problem(key, f"{key}={value!r}: only {shown}: {reason}"))
            else:
                logger.info("%s: %s: %s; nothing to change", origin, key, reason)
        elif key in REPLACED_KEYS:
            problems.append(Problem(key, f"'{key}' is no longer used: {REPLACED_KEYS[key]}"))
        elif line := in_training_config(key):
            problems.append(Problem(key, line))
        elif key in UNSUPPORTED_KEYS:
            problems.append(
                Problem(
                    key,
                    f"'{key}' (a LLaMA-Factory key) is not available in tuneforge: "
                    f"{UNSUPPORTED_KEYS[key]}; remove the key",
                )
            )
        else:
            hint = did_you_mean(key, owner, renamed=RENAMED_KEYS)
            problems.append(Problem(key, f"unknown key {key!r}{hint}"))

    built: dict[str, Any] = {}
    for name, model in SECTIONS.items():
        built[name], section_problems = _section(model, sections[name])
        problems += section_problems
    config = RunConfig(**built)
    problems += cross_problems(config, {problem.key for problem in problems if problem.key})
    if problems:
        raise ConfigError(*problems, origin=origin)
    return config


def _section(model: type[SectionT], values: Mapping[str, Any]) -> tuple[SectionT, list[Problem]]:
    """The section, and the problems of the values that fail their field check; those are left
    at their defaults, so that the cross-field checks can still judge the others."""
    try:
        return model(**values), []
    except ValidationError as exc:
        problems = _describe(exc)
    failed = {problem.key for problem in problems}
    return model(**{key: value for key, value in values.items() if key not in failed}), problems


def _describe(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"])
        value = err.get("input")
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "literal_error":
            message = "allowed: " + message.removeprefix("Input should be ").replace("'", "")
        problems.append(Problem(str(err["loc"][0]), f"{where}={value!r}: {message}"))
    return problems


def save_config(cfg: RunConfig, path: str | Path) -> None:
    """Write the resolved flat config, the form users write and `load_config` reads back."""
    Path(path).write_text(
        yaml.safe_dump(cfg.flat(), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
