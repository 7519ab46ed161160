"""Checks for the keys that make a run bigger: QLoRA, RoPE scaling, DeepSpeed/FSDP, Liger.

`scale_problems` checks how these keys combine, from the config alone. Each key also leans on
an optional package or an extra file: `missing_extra` and `read_engine_config` find them, for
`config.environment` (before any weights load, so a missing ``pip install`` or a typo in a
DeepSpeed file path is one line, not a traceback from a launcher ten minutes later) and for the
code that uses them.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tuneforge.config.yamlerror import yaml_error
from tuneforge.errors import ConfigError, Problem
from tuneforge.userfiles import kind_of, read_utf8

if TYPE_CHECKING:
    from tuneforge.config.schema import RunConfig


def missing_extra(feature: str, module: str, extra: str) -> str | None:
    """One line naming the extra to install when `module` cannot be imported, else None."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or stubbed-out package
        found = False
    if found:
        return None
    return f"{feature} needs the {module} package: pip install 'tuneforge[{extra}]'"


def read_engine_config(key: str, path: str) -> dict[str, Any]:
    """A DeepSpeed or FSDP settings file (JSON, or YAML by its suffix) as a dict."""
    file = Path(os.path.expanduser(path))  # unlike Path's, leaves "~nosuchuser" as it is
    if kind_of(file) != "file":
        where = "examples/deepspeed/" if key == "deepspeed" else "examples/fsdp/"
        raise ConfigError(f"{key}='{path}': no such file; ready-made ones are in {where}")
    text = read_utf8(file, ConfigError)
    try:
        if file.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{key}='{path}': line {exc.lineno}: not valid JSON ({exc.msg})"
        ) from None
    except yaml.YAMLError as exc:
        line, problem = yaml_error(exc, text)
        where = f"line {line}: " if line else ""
        raise ConfigError(f"{key}='{path}': {where}not valid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(f"{key}='{path}': nested too deeply to be settings") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{key}='{path}': expected a mapping of settings, got {type(data).__name__}"
        )
    return data


def scale_problems(cfg: RunConfig, valid: Callable[..., bool]) -> list[Problem]:
    """Every problem with how the QLoRA, RoPE and DeepSpeed/FSDP keys combine; a check runs
    when `valid` says each key it reads passed its field check."""
    model, train = cfg.model, cfg.train
    bits = model.quantization_bit
    problems = []
    lora = cfg.finetune.finetuning_type == "lora"
    if valid("quantization_bit", "finetuning_type") and bits is not None and not lora:
        problems.append(
            Problem(
                "quantization_bit",
                f"quantization_bit={bits} (QLoRA) trains LoRA adapters on frozen "
                f"quantised weights and needs finetuning_type=lora "
                f"(it is {cfg.finetune.finetuning_type})",
            )
        )
    rope_without_kind = model.rope_factor is not None and model.rope_scaling is None
    if valid("rope_factor", "rope_scaling") and rope_without_kind:
        problems.append(
            Problem(
                "rope_factor",
                f"rope_factor={model.rope_factor} needs rope_scaling (linear, dynamic, yarn or "
                f"llama3)",
            )
        )
    if not (valid("do_train") and train.do_train):
        return problems
    if valid("deepspeed", "fsdp") and train.deepspeed and train.fsdp:
        problems.append(Problem("deepspeed", "deepspeed and fsdp are both set; choose one engine"))
    if valid("fsdp_config", "fsdp") and train.fsdp_config and not train.fsdp:
        problems.append(
            Problem("fsdp_config", "fsdp_config is set but fsdp is not; add fsdp: true")
        )
    if valid("quantization_bit", "fsdp") and bits is not None and train.fsdp:
        problems.append(sharded_quantization(bits, "fsdp"))
    return problems


def sharded_quantization(bits: int, engine: str) -> Problem:
    """Quantised weights with an engine that shards them: FSDP (known from the config) or
    DeepSpeed ZeRO-3 (known from its settings file)."""
    return Problem(
        "quantization_bit",
        f"quantization_bit={bits} with {engine}: bitsandbytes weights cannot be "
        f"sharded; use plain data parallel (--nproc) or ZeRO-2 with QLoRA",
    )
