"""End-to-end training on a tiny random model: what a run must leave behind and refuse."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import tuneforge
from tuneforge.errors import OutputError


def log_entries(out) -> list[dict]:
    return [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]


def losses(out) -> list[float]:
    return [e["loss"] for e in log_entries(out) if "loss" in e]


def test_lora_sft_learns_and_saves_a_plain_peft_adapter(base_config, tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    result = tuneforge.train(base_config)
    out = result.output_dir
    curve = losses(out)
    assert sum(curve[-3:]) / 3 < curve[0] - 0.1, curve
    entries = log_entries(out)
    assert all({"step", "epoch", "tokens"} <= e.keys() for e in entries)
    assert any("learning_rate" in e for e in entries)
    assert entries[-1]["tokens"] > 0

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        before = base(ids).logits
        tuned = PeftModel.from_pretrained(base, out)(ids).logits
    assert not torch.allclose(before, tuned)
    assert AutoTokenizer.from_pretrained(out).chat_template
    saved = tuneforge.load_config(out / "tuneforge_config.yaml")
    assert saved.finetune.lora_rank == 8 and saved.data.dataset == ["qa"]
    assert json.loads((out / "all_results.json").read_text())["train_loss"] > 0


@pytest.mark.parametrize("kind", ["full", "freeze"])
def test_full_and_freeze_save_a_model_transformers_loads(base_config, tiny_model_dir, kind):
    from transformers import AutoModelForCausalLM

    base_config.update(finetuning_type=kind, freeze_trainable_layers=1)
    out = tuneforge.train(base_config).output_dir
    tuned = AutoModelForCausalLM.from_pretrained(out)
    base = load_file(tiny_model_dir / "model.safetensors")
    changed = {
        name
        for name, weight in tuned.state_dict().items()
        if name in base and not torch.equal(weight, base[name])
    }
    if kind == "full":
        assert any("layers.0." in name for name in changed)
    else:
        assert changed and all("layers.1." in name for name in changed), changed


def test_early_stopping_stops_and_keeps_the_best(base_config):
    base_config.update(
        val_size=0.25,
        eval_steps=1,
        early_stopping_steps=2,
        learning_rate=5.0,
        num_train_epochs=10,
        max_grad_norm=0,
    )
    result = tuneforge.train(base_config)
    entries = log_entries(result.output_dir)
    evals = [e for e in entries if "eval_loss" in e]
    steps_per_epoch = 6  # 24 training samples, batch 4
    assert evals and entries[-1]["step"] < 10 * steps_per_epoch
    best_step = min(evals, key=lambda e: e["eval_loss"])["step"]
    assert result.best_checkpoint.endswith(f"checkpoint-{best_step}")


def test_pt_stage_packs_text_without_losing_tokens(base_config):
    base_config.update(stage="pt", dataset="corpus", num_train_epochs=1)
    out = tuneforge.train(base_config).output_dir
    assert losses(out)
    cfg = tuneforge.load_config(out / "tuneforge_config.yaml")
    assert cfg.packing is True


def test_padding_free_batches_train_exactly_as_padded_ones(base_config, tmp_path, caplog):
    """sft's default puts a batch's samples in one row: the same samples per step and the
    same loss as one padded sample per row, with no padding."""
    base_config.update(max_steps=3, learning_rate=1e-2)
    with caplog.at_level("INFO", logger="tuneforge"):
        flat = tuneforge.train(base_config).output_dir
    assert "each batch's samples back to back in one row" in caplog.text
    base_config.update(packing=False, output_dir=str(tmp_path / "padded"))
    padded = tuneforge.train(base_config).output_dir
    assert losses(flat) == pytest.approx(losses(padded), abs=1e-4)
    assert [e["tokens"] for e in log_entries(flat)] == [e["tokens"] for e in log_entries(padded)]


def test_existing_run_is_never_overwritten_without_consent(base_config):
    base_config.update(max_steps=2)
    out = tuneforge.train(base_config).output_dir
    adapter = (out / "adapter_model.safetensors").read_bytes()
    with pytest.raises(OutputError, match="already holds a run; set overwrite_output_dir"):
        tuneforge.train(base_config)
    assert (out / "adapter_model.safetensors").read_bytes() == adapter
    base_config.update(overwrite_output_dir=True)
    tuneforge.train(base_config)


def test_cli_reports_bad_config_in_one_line_per_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("dataset: qa\nlearning_rate: -1\nlora_rnak: 8\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "train", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("tuneforge: error:") for line in lines)
    assert "Traceback" not in proc.stderr
