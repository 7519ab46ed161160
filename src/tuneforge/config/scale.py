"""Checks for the keys that make a run bigger: QLoRA, RoPE scaling, DeepSpeed/FSDP, Liger.

Each of them leans on an optional package or an extra file. Both are checked when the config
is parsed, so a missing ``pip install`` or a typo in a DeepSpeed file path is one line before
any weights load, not a traceback from a launcher ten minutes later.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from tuneforge.config.yamlerror import yaml_error
from tuneforge.errors import ConfigError
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


def scale_problems(cfg: RunConfig, origin: str) -> list[str]:
    """Every problem with the QLoRA, RoPE, DeepSpeed/FSDP and Liger keys, one line each."""
    problems: list[str | None] = []
    model, train = cfg.model, cfg.train
    bits = model.quantization_bit
    if bits is not None:
        if cfg.finetune.finetuning_type != "lora":
            problems.append(
                f"quantization_bit={bits} (QLoRA) trains LoRA adapters on frozen "
                f"quantised weights and needs finetuning_type=lora "
                f"(it is {cfg.finetune.finetuning_type})"
            )
        problems.append(missing_extra(f"quantization_bit={bits}", "bitsandbytes", "qlora"))
    if model.rope_factor is not None and model.rope_scaling is None:
        problems.append(
            f"rope_factor={model.rope_factor} needs rope_scaling (linear, dynamic, yarn or llama3)"
        )
    if train.do_train:
        problems.extend(_engine_problems(cfg))
    return [f"{origin}: {line}" for line in problems if line]


def _engine_problems(cfg: RunConfig) -> list[str | None]:
    train = cfg.train
    problems: list[str | None] = []
    if train.deepspeed and train.fsdp:
        problems.append("deepspeed and fsdp are both set; choose one engine")
    if train.fsdp_config and not train.fsdp:
        problems.append("fsdp_config is set but fsdp is not; add fsdp: true")
    settings: dict[str, dict[str, Any]] = {}
    for key, path in (("deepspeed", train.deepspeed), ("fsdp_config", train.fsdp_config)):
        if path:
            try:
                settings[key] = read_engine_config(key, path)
            except ConfigError as exc:
                problems.extend(exc.lines)
    zero = settings.get("deepspeed", {}).get("zero_optimization")
    stage = zero.get("stage") if isinstance(zero, dict) else None
    bits = cfg.model.quantization_bit
    if bits is not None and (train.fsdp or stage == 3):
        engine = "fsdp" if train.fsdp else "DeepSpeed ZeRO-3"
        problems.append(
            f"quantization_bit={bits} with {engine}: bitsandbytes weights cannot be "
            f"sharded; use plain data parallel (--nproc) or ZeRO-2 with QLoRA"
        )
    if train.deepspeed:
        problems.append(missing_extra("deepspeed", "deepspeed", "deepspeed"))
    if train.enable_liger_kernel:
        import torch

        problems.append(missing_extra("enable_liger_kernel", "liger_kernel", "liger"))
        if not torch.cuda.is_available():
            problems.append(
                "enable_liger_kernel: Liger's Triton kernels need a CUDA GPU and "
                "this machine has none; remove the key"
            )
    return problems
