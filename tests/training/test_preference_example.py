"""The shipped DPO example, end to end on the real default model, in a CI-sized cut:
train a few steps, then `tuneforge eval` on the held-out pairs, base vs tuned."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuneforge

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dpo_example_moves_the_held_out_preferences(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    example = ROOT / "examples" / "dpo_lora.yaml"
    out = tmp_path / "dpo"
    small = [
        f"output_dir={out}",
        "max_steps=6",
        'eval_strategy="no"',  # the evaluation below scores the held-out pairs
        "report_to=none",
        "max_new_tokens=16",
    ]
    result = tuneforge.train(tuneforge.load_config(example, small))
    assert result.completed and (out / "adapter_model.safetensors").is_file()

    report = tuneforge.evaluate(tuneforge.load_config(example, small), str(out), tmp_path / "e")
    metrics = report.metrics
    assert metrics["pairs"] == 40
    assert metrics["implicit_reward"]["accuracy"] > 0.75
    assert metrics["tuned"]["margin_per_token"] > metrics["base"]["margin_per_token"]
