"""Pick the numeric precision from the hardware the run actually has, and say why.

Configs copied from LLaMA-Factory say ``bf16: true``. That is right on a GPU with bf16, and
on a CPU with native bf16 instructions (AVX512-BF16 or AMX), where bf16 matmuls run ~2.5x
faster than float32. On a CPU without them (an AVX2-only EPYC, say) torch emulates bf16 and a
training step is ~10x slower than in float32, while nothing tells the user why. torch's
``get_cpu_capability()`` reports the vector width ("AVX512"), not bf16 support, so the CPU's
flags are read from /proc/cpuinfo. fp16 mixed precision needs CUDA; on a CPU it fails.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from tuneforge.config.schema import ModelArgs, TrainArgs
from tuneforge.errors import ConfigError

logger = logging.getLogger(__name__)

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

Asked = Literal["auto", "float32", "float16", "bfloat16"]


@dataclass(frozen=True)
class Hardware:
    """What decides the precision: where the model runs and whether bf16 is native there."""

    device: Literal["cuda", "mps", "cpu"]
    native_bf16: bool
    description: str


@dataclass(frozen=True)
class Precision:
    """The training precision: mixed-precision flags for the trainer and the reason."""

    bf16: bool
    fp16: bool
    compute_dtype: torch.dtype
    reason: str


def read_proc_cpuinfo() -> str:
    """The Linux CPU description; empty elsewhere, which means "no native bf16"."""
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_bf16_flags(cpuinfo: str) -> list[str]:
    """The native-bf16 instruction sets named in the ``flags`` lines of a /proc/cpuinfo text."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return [flag for flag in CPU_BF16_FLAGS if flag in flags]


def detect_hardware(read_cpuinfo: Callable[[], str] = read_proc_cpuinfo) -> Hardware:
    """The device a run uses (CUDA, else Apple MPS, else CPU) and whether it has native bf16."""
    if torch.cuda.is_available():
        return Hardware(
            "cuda",
            torch.cuda.is_bf16_supported(including_emulation=False),
            f"GPU {torch.cuda.get_device_name()}",
        )
    if torch.backends.mps.is_available():
        return Hardware("mps", False, "Apple MPS device")
    found = cpu_bf16_flags(read_cpuinfo())
    if found:
        return Hardware("cpu", True, f"CPU with {' and '.join(found)}")
    return Hardware("cpu", False, "CPU without avx512_bf16/amx_bf16")


def choose_precision(train_args: TrainArgs, hardware: Hardware | None = None) -> Precision:
    """Training precision from ``bf16``/``fp16``: unset = auto; true = use it where it works.

    Setting either key takes the choice over: true asks for that format, false (with the other
    not true) asks for float32. A request the hardware cannot serve well falls back to the
    automatic choice, and the reason says so.
    """
    hardware = hardware or detect_hardware()
    bf16, fp16 = train_args.bf16, train_args.fp16
    if bf16 and fp16:
        raise ConfigError("bf16 and fp16 are both true; choose one")
    if bf16:
        asked: Asked = "bfloat16"
    elif fp16:
        asked = "float16"
    elif bf16 is False or fp16 is False:
        asked = "float32"
    else:
        asked = "auto"
    dtype, reason = _pick(asked, hardware)
    return Precision(
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        compute_dtype=dtype,
        reason=reason,
    )


def inference_dtype(model_args: ModelArgs, hardware: Hardware | None = None) -> torch.dtype:
    """The weights dtype for chat and evaluation (``infer_dtype``), by the training rule."""
    dtype, reason = _pick(model_args.infer_dtype, hardware or detect_hardware())
    logger.info("inference dtype %s", reason)
    return dtype


def _pick(asked: Asked, hardware: Hardware) -> tuple[torch.dtype, str]:
    """One rule for training and inference: the dtype and a sentence saying why."""
    if asked == "float32":
        return torch.float32, "float32, as set in the config"
    if asked == "bfloat16":
        if hardware.native_bf16:
            return torch.bfloat16, f"bfloat16, as set; the {hardware.description} runs it natively"
        dtype, why = _auto(hardware)
        return dtype, f"{_name(dtype)}: bf16 was set but {why}"
    if asked == "float16":
        if hardware.device == "cuda":
            return torch.float16, f"float16, as set, on the {hardware.description}"
        dtype, why = _auto(hardware)
        return dtype, (
            f"{_name(dtype)}: fp16 was set but float16 needs a CUDA GPU, not a "
            f"{hardware.description}; automatic choice: {why}"
        )
    dtype, why = _auto(hardware)
    return dtype, f"{_name(dtype)} (automatic): {why}"


def _auto(hardware: Hardware) -> tuple[torch.dtype, str]:
    if hardware.native_bf16:
        return torch.bfloat16, f"the {hardware.description} runs bf16 natively"
    if hardware.device == "cuda":
        return torch.float16, f"the {hardware.description} has no bf16"
    if hardware.device == "mps":
        return torch.float32, f"mixed precision on the {hardware.description} is not used"
    return torch.float32, f"the {hardware.description} would emulate bf16, ~10x slower than float32"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
