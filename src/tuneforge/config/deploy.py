"""Read an export YAML (``tuneforge export``) or an inference YAML (``tuneforge chat|api``).

Such a file is a run config's keys (model, adapter, template, dtype, generation, system
prompt) plus the keys of its own section (`deploy_args`). One pure pass splits the keys,
validates both parts and reports every problem together, one line each naming the file and
the key: unknown keys get a "did you mean" over both parts, a key of the other kind of file
says which command takes it, and LLaMA-Factory features tuneforge does not have say what to
use instead. ``key=value`` overrides are split the same way, and flags (given here as the
section's keys) override both. The machine is judged separately, by `check_backend`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from tuneforge.config.deploy_args import (
    ENGINE_PREFIXES,
    EXPORT_QUANTIZATION,
    EXPORT_QUANTIZATION_KEYS,
    REFUSED_EXPORT_KEYS,
    ExportArgs,
    InferArgs,
    belongs_elsewhere,
    yaml_kind,
)
from tuneforge.config.load import (
    RENAMED_KEYS,
    REPLACED_KEYS,
    UNSET,
    UNSUPPORTED_KEYS,
    _parse_overrides,
    _read_yaml,
    load_config,
    validate_section,
)
from tuneforge.config.scale import missing_extra
from tuneforge.config.schema import RunConfig, field_owner
from tuneforge.errors import ConfigError, Problem
from tuneforge.messages import did_you_mean

ArgsT = TypeVar("ArgsT", ExportArgs, InferArgs)


@dataclass(frozen=True)
class DeployConfig(Generic[ArgsT]):
    """What an export or inference YAML says.

    `run` is the run config of the YAML's other keys (and the overrides); None without a
    YAML, when the model's folder supplies it and `overrides` (the run keys of the
    overrides) go on top of it."""

    args: ArgsT
    run: RunConfig | None
    overrides: Mapping[str, Any] = field(default_factory=dict)
    origin: str = "config"


def read_export_config(
    source: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    **flags: Any,
) -> DeployConfig[ExportArgs]:
    """An export YAML (and overrides; `flags` are command-line values of export keys, None
    when not given, which override both). export_dir must be set by one of them."""
    return _read(ExportArgs, source, overrides, flags)


def read_infer_config(
    source: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    **flags: Any,
) -> DeployConfig[InferArgs]:
    """An inference YAML (and overrides, and `flags` as for `read_export_config`)."""
    return _read(InferArgs, source, overrides, flags)


def check_backend(args: InferArgs, origin: str = "config") -> None:
    """One line when this machine cannot run the asked inference engine."""
    backend = args.infer_backend
    if backend == "huggingface":
        return
    missing = missing_extra(f"infer_backend={backend}", backend, backend)
    if missing:
        message = (
            f"infer_backend={backend}: {backend} is not installed here (and it needs a CUDA "
            f"GPU); use infer_backend: huggingface"
        )
    else:
        import torch  # here: judging a config alone must not import it

        if not torch.cuda.is_available():
            message = (
                f"infer_backend={backend}: {backend} needs a CUDA GPU and this machine has "
                f"none; use infer_backend: huggingface"
            )
        else:
            message = (
                f"infer_backend={backend}: tuneforge generates through transformers only; "
                f"{backend} is installed but not used by it yet; use infer_backend: huggingface"
            )
    raise ConfigError(Problem("infer_backend", message), origin=origin)


def _read(
    model: type[ArgsT],
    source: str | Path | None,
    overrides: Iterable[str] | Mapping[str, Any],
    flags: Mapping[str, Any],
) -> DeployConfig[ArgsT]:
    origin = "config" if source is None else str(source)
    from_file = _read_yaml(Path(source)) if source is not None else {}
    given = overrides if isinstance(overrides, Mapping) else _parse_overrides(overrides)
    problems: list[Problem] = []
    own_file, run_file = _split(model, from_file, problems)
    own_given, run_given = _split(model, given, problems)
    own = {**own_file, **own_given, **{k: v for k, v in flags.items() if v is not None}}
    own = {key: value for key, value in own.items() if value is not UNSET}
    try:
        args: ArgsT | None = validate_section(model, own)
    except ConfigError as exc:
        problems += exc.problems
        args = None
    run = None
    if source is not None:
        try:
            # Using a model, not training it: the training-only checks do not apply.
            run = load_config({**run_file, "do_train": False}, run_given)
        except ConfigError as exc:
            problems += exc.problems
    if args is not None:
        problems += _cross_problems(args)
    if problems or args is None:
        raise ConfigError(*problems, origin=origin)
    return DeployConfig(args, run, {} if run is not None else run_given, origin)


def _split(
    model: type[ArgsT], raw: Mapping[str, Any], problems: list[Problem]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The section's own keys and the run keys (left for `load_config` to judge); the keys
    that are neither become problems."""
    fields: list[str] = list(model.model_fields)
    run_keys: list[str] = list(field_owner())
    known = {*run_keys, *RENAMED_KEYS, *REPLACED_KEYS, *UNSUPPORTED_KEYS}
    own: dict[str, Any] = {}
    run: dict[str, Any] = {}
    quantization = [key for key in EXPORT_QUANTIZATION_KEYS if key in raw]
    elsewhere: dict[str, list[str]] = {}
    for key, value in raw.items():
        key = str(key)
        kind = yaml_kind(key)
        if key in fields:
            own[key] = value
        elif model is ExportArgs and key in quantization:
            if key == quantization[0]:
                problems.append(Problem(key, f"{', '.join(quantization)}: {EXPORT_QUANTIZATION}"))
        elif model is ExportArgs and key in REFUSED_EXPORT_KEYS:
            problems.append(Problem(key, f"{key}: {REFUSED_EXPORT_KEYS[key]}"))
        elif kind is not None:
            elsewhere.setdefault(kind, []).append(key)
        elif key not in known and _misspelt_own(key, fields, run_keys):
            hint = did_you_mean(key, fields)
            problems.append(Problem(key, f"unknown key {key!r}{hint}"))
        else:
            run[key] = value
    problems += [
        Problem(keys[0], belongs_elsewhere(keys, kind)) for kind, keys in elsewhere.items()
    ]
    return own, run


def _misspelt_own(key: str, fields: list[str], run_keys: list[str]) -> bool:
    """Whether an unknown key is closest to one of the section's own keys (else the run
    config's check names its closest run key)."""
    hint = did_you_mean(key, fields)
    return bool(hint) and hint == did_you_mean(key, [*fields, *run_keys], renamed=RENAMED_KEYS)


def _cross_problems(args: ExportArgs | InferArgs) -> list[Problem]:
    """What the section's keys need of each other: an export needs somewhere to go, and an
    engine's keys do nothing with another engine (said rather than ignored)."""
    if isinstance(args, ExportArgs):
        if args.export_dir is not None:
            return []
        return [
            Problem(
                "export_dir",
                "export_dir is not set: the folder (or .gguf file) to write; add export_dir: "
                "to the YAML or give --out",
            )
        ]
    return [
        Problem(
            key,
            f"{key} applies to infer_backend: {engine} (it is {args.infer_backend}); "
            f"remove the key",
        )
        for key in sorted(args.model_fields_set)
        for prefix, engine in ENGINE_PREFIXES.items()
        if key.startswith(prefix) and args.infer_backend != engine
    ]
