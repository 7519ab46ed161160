"""GPU-only checks (skipped cleanly without CUDA): bf16 QLoRA memory and Liger kernels.

The measured figures are attached to the test report (``record_property``; see them with
``pytest -m gpu -rA --junitxml=gpu.xml``) for docs/benchmarks.md.
"""

from __future__ import annotations

import json

import pytest
import torch

import tuneforge
from tuneforge.config import ModelArgs
from tuneforge.models import load_model
from tuneforge.models.quantization import quantized_bytes_per_weight

pytestmark = pytest.mark.gpu

MIB = 2**20


def run_summary(out) -> tuple[float, float]:
    """(last logged loss, useful tokens per second) of a finished run."""
    entries = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    losses = [e for e in entries if "loss" in e]
    results = json.loads((out / "all_results.json").read_text())
    return losses[-1]["loss"], losses[-1]["tokens"] / results["train_runtime"]


def test_bf16_qlora_memory_on_the_gpu(base_config, default_model_dir, record_property):
    torch.cuda.empty_cache()
    start = torch.cuda.memory_allocated()
    model = load_model(
        ModelArgs(model_name_or_path=str(default_model_dir), quantization_bit=4),
        dtype=torch.bfloat16,
    )
    loaded = torch.cuda.memory_allocated() - start
    quantised = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    linear = sum(m.in_features * m.out_features for m in quantised)
    other = sum(p.numel() for p in model.parameters() if p.dtype == torch.bfloat16)
    estimate = linear * quantized_bytes_per_weight(4) + other * 2
    record_property("qlora4_weights_mib", round(loaded / MIB, 1))
    record_property("qlora4_weights_estimate_mib", round(estimate / MIB, 1))
    assert loaded == pytest.approx(estimate, rel=0.05)
    del model
    torch.cuda.empty_cache()

    torch.cuda.reset_peak_memory_stats()
    base_config.update(
        model_name_or_path=str(default_model_dir),
        quantization_bit=4,
        bf16=True,
        max_steps=4,
        lora_rank=16,
        learning_rate=1e-4,
    )
    out = tuneforge.train(base_config).output_dir
    peak = torch.cuda.max_memory_allocated() - start
    record_property("qlora4_train_peak_mib", round(peak / MIB, 1))
    loss, _ = run_summary(out)
    assert 0 < loss < 20
    # k-bit preparation keeps embeddings and norms in fp32: twice their bf16 size, plus the
    # adapters, their gradients and Adam states, plus activations of a small batch
    assert estimate < peak < 3 * estimate + 512 * MIB


def test_liger_kernels_train_like_the_stock_model(base_config, default_model_dir, record_property):
    pytest.importorskip("liger_kernel")
    base_config.update(
        model_name_or_path=str(default_model_dir), bf16=True, max_steps=8, learning_rate=1e-4
    )
    figures = {}
    for liger in (False, True):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        out = tuneforge.train(
            {
                **base_config,
                "enable_liger_kernel": liger,
                "output_dir": f"{base_config['output_dir']}-{liger}",
            }
        ).output_dir
        loss, tokens_per_s = run_summary(out)
        figures[liger] = loss
        record_property(f"liger_{liger}_tokens_per_s", round(tokens_per_s, 1))
        record_property(f"liger_{liger}_peak_mib", round(torch.cuda.max_memory_allocated() / MIB))
    assert figures[True] == pytest.approx(figures[False], rel=0.02)
