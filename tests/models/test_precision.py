"""Precision follows the hardware: native bf16 or not, CUDA or CPU, and the user's bf16/fp16."""

from __future__ import annotations

import pytest
import torch

from tuneforge.config.schema import ModelArgs, TrainArgs
from tuneforge.errors import ConfigError
from tuneforge.models.precision import (
    Hardware,
    choose_precision,
    cpu_bf16_flags,
    detect_hardware,
    inference_dtype,
)

# Trimmed /proc/cpuinfo of the two CPUs seen on this kind of machine.
EPYC_AVX2 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi2 sha_ni
bugs\t\t: sysret_ss_attrs
"""
XEON_BF16 = """\
processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8481C
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_bf16 avx512_fp16 amx_bf16 amx_tile
"""

CPU_BF16 = Hardware("cpu", True, "CPU with avx512_bf16")
CPU_AVX2 = Hardware("cpu", False, "CPU without avx512_bf16/amx_bf16")
GPU_BF16 = Hardware("cuda", True, "GPU NVIDIA H100")
GPU_FP16 = Hardware("cuda", False, "GPU Tesla T4")


def test_bf16_flags_are_read_from_the_flags_line_only():
    assert cpu_bf16_flags(EPYC_AVX2) == []
    assert cpu_bf16_flags(XEON_BF16) == ["avx512_bf16", "amx_bf16"]
    assert cpu_bf16_flags("model name\t: avx512_bf16 marketing name\n") == []
    assert cpu_bf16_flags("") == []


@pytest.mark.parametrize(("cpuinfo", "native"), [(EPYC_AVX2, False), (XEON_BF16, True)])
def test_cpu_hardware_comes_from_the_injected_cpuinfo(monkeypatch, cpuinfo, native):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    hardware = detect_hardware(read_cpuinfo=lambda: cpuinfo)
    assert (hardware.device, hardware.native_bf16) == ("cpu", native)


@pytest.mark.parametrize(
    ("hardware", "bf16", "fp16", "expected", "because"),
    [
        (CPU_BF16, None, None, torch.bfloat16, "runs bf16 natively"),
        (CPU_BF16, True, None, torch.bfloat16, "as set"),
        (CPU_BF16, False, None, torch.float32, "as set"),
        (CPU_BF16, None, True, torch.bfloat16, "fp16 was set but float16 needs a CUDA GPU"),
        (CPU_AVX2, None, None, torch.float32, "would emulate bf16, ~10x slower"),
        (CPU_AVX2, True, None, torch.float32, "bf16 was set but the CPU without avx512_bf16"),
        (CPU_AVX2, False, None, torch.float32, "as set"),
        (CPU_AVX2, None, True, torch.float32, "fp16 was set but float16 needs a CUDA GPU"),
        (CPU_AVX2, None, False, torch.float32, "as set"),
        (GPU_BF16, None, None, torch.bfloat16, "runs bf16 natively"),
        (GPU_BF16, None, True, torch.float16, "as set"),
        (GPU_BF16, False, None, torch.float32, "as set"),
        (GPU_FP16, None, None, torch.float16, "has no bf16"),
        (GPU_FP16, True, None, torch.float16, "bf16 was set but the GPU Tesla T4 has no bf16"),
    ],
)
def test_training_precision(hardware, bf16, fp16, expected, because):
    precision = choose_precision(TrainArgs(bf16=bf16, fp16=fp16), hardware)
    assert precision.compute_dtype == expected
    assert (precision.bf16, precision.fp16) == (
        expected == torch.bfloat16,
        expected == torch.float16,
    )
    assert because in precision.reason


def test_bf16_and_fp16_together_are_refused():
    with pytest.raises(ConfigError, match="bf16 and fp16 are both true"):
        choose_precision(TrainArgs(bf16=True, fp16=True), CPU_BF16)


@pytest.mark.parametrize(
    ("hardware", "asked", "expected"),
    [
        (CPU_AVX2, "auto", torch.float32),
        (CPU_AVX2, "bfloat16", torch.float32),
        (CPU_AVX2, "float16", torch.float32),
        (CPU_BF16, "auto", torch.bfloat16),
        (CPU_BF16, "float32", torch.float32),
        (CPU_BF16, "float16", torch.bfloat16),
        (GPU_BF16, "auto", torch.bfloat16),
        (GPU_BF16, "float16", torch.float16),
        (GPU_FP16, "auto", torch.float16),
        (GPU_FP16, "bfloat16", torch.float16),
    ],
)
def test_inference_dtype(hardware, asked, expected):
    assert inference_dtype(ModelArgs(infer_dtype=asked), hardware) == expected
