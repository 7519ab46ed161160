"""What a run logs: values checked against the schedule, a direct gradient and the saved adapter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from monitor_helpers import read_log, train_run
from safetensors.torch import load_file

import tuneforge


def training_entries(run: Path) -> list[dict]:
    return [e for e in read_log(run) if "loss" in e]


def test_learning_rate_follows_the_configured_cosine_schedule_with_warmup(sft_run):
    logged = {e["step"]: e["learning_rate"] for e in training_entries(sft_run)}
    assert sorted(logged) == list(range(1, 7))
    for step, lr in logged.items():
        done = step - 1  # the rate logged at a step is the one its update used
        if done < 2:
            expected = 2e-2 * done / 2
        else:
            expected = 2e-2 * 0.5 * (1 + math.cos(math.pi * (done - 2) / 4))
        assert lr == pytest.approx(expected, rel=1e-6, abs=1e-12), step


def test_grad_norm_is_the_norm_before_clipping_computed_directly(
    run_settings, tmp_path, tiny_model_dir
):
    from transformers import AutoModelForCausalLM

    from tuneforge.data import build_collator, prepare_datasets
    from tuneforge.models import load_tokenizer

    settings = {
        **run_settings,
        "finetuning_type": "full",
        "val_size": 0,
        "max_steps": 1,
        "per_device_train_batch_size": 40,
        "max_grad_norm": 1e-3,
        "bf16": False,
    }  # float32, so the direct computation below is exact
    run = train_run(settings, tmp_path / "run")
    (entry,) = training_entries(run)

    cfg = tuneforge.load_config({**settings, "output_dir": str(tmp_path / "direct")})
    tokenizer = load_tokenizer(cfg.model)
    rows = list(prepare_datasets(cfg, tokenizer).train)
    assert len(rows) == 40  # one batch holds every row: the data order cannot matter
    batch = build_collator(tokenizer, batching="padded")(rows)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    loss = model(**batch).loss
    loss.backward()
    norm = torch.linalg.vector_norm(
        torch.stack(
            [torch.linalg.vector_norm(p.grad) for p in model.parameters() if p.grad is not None]
        )
    )
    assert entry["loss"] == pytest.approx(loss.item(), rel=1e-5)
    assert entry["grad_norm"] == pytest.approx(norm.item(), rel=1e-4)
    assert entry["grad_norm"] > 100 * 1e-3  # far above max_grad_norm: logged before clipping


def test_each_training_log_has_throughput_samples_and_memory(sft_run):
    entries = training_entries(sft_run)
    assert [e["samples"] for e in entries] == [4.0 * e["step"] for e in entries]
    assert all(e["tokens_per_s"] > 0 for e in entries)
    assert all(0.05 < e["memory_rss_gb"] <= e["peak_memory_rss_gb"] < 64 for e in entries)
    tokens = [e["tokens"] for e in entries]
    assert tokens == sorted(tokens) and tokens[0] > 0


def test_samples_seen_carry_on_through_a_resume(run_settings, tmp_path):
    settings = {**run_settings, "val_size": 0, "save_steps": 2}
    run = train_run(settings, tmp_path / "run", max_steps=2)
    train_run(settings, tmp_path / "run", max_steps=4, resume_from_checkpoint=True)
    entries = training_entries(run)
    assert [e["step"] for e in entries] == [1, 2, 3, 4]
    assert [e["samples"] for e in entries] == [4.0, 8.0, 12.0, 16.0]
    moving = [e for e in read_log(run) if e.get("alert") == "weights_not_moving"]
    assert not moving  # the resume's fresh snapshot is not "no change"


def test_lora_norms_match_the_saved_adapter(sft_run):
    weights = [e for e in read_log(sft_run) if "weights" in e]
    assert weights[0]["step"] == 0 and weights[0]["weights"]["lora_B_norm"] == 0.0
    assert [e["step"] for e in weights] == [0, 2, 4, 6]  # start, each validation
    final = weights[-1]
    saved = load_file(sft_run / "adapter_model.safetensors")
    squares = 0.0
    b_square = 0.0
    for name, a in saved.items():
        if ".lora_A." in name:
            b = saved[name.replace(".lora_A.", ".lora_B.")]
            squares += float((2.0 * b @ a).square().sum())  # scale = lora_alpha / r = 16 / 8
            b_square += float(b.square().sum())
    assert final["weights"]["delta_norm"] == pytest.approx(math.sqrt(squares), rel=1e-4)
    assert final["weights"]["lora_B_norm"] == pytest.approx(math.sqrt(b_square), rel=1e-4)
    layers = final["weights_by_layer"]["lora_B_norm"]
    assert set(layers) == {"layer_00", "layer_01"}
    assert math.sqrt(sum(v * v for v in layers.values())) == pytest.approx(
        final["weights"]["lora_B_norm"], rel=1e-6
    )
    assert 0 < final["weights"]["relative_change"] < 10


def assert_tensorboard_has_every_tag(run: Path) -> None:
    """TensorBoard's own reader finds every logged tag, with the JSONL log's values."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (folder,) = (run / "runs").iterdir()
    events = EventAccumulator(
        str(folder), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0}
    )
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    expected = {
        "train/loss",
        "train/learning_rate",
        "train/grad_norm",
        "train/tokens_per_s",
        "train/samples",
        "train/memory_rss_gb",
        "eval/loss",
        "weights/lora_A_norm",
        "weights/lora_B_norm",
        "weights/delta_norm",
        "weights/relative_change",
        "weights/lora_B_norm/layer_00",
        "weights/delta_norm/layer_01",
    }
    assert expected <= scalars, expected - scalars
    histograms = set(events.Tags()["histograms"])
    assert {"weights/lora_A/layer_00", "weights/lora_B/layer_01"} <= histograms
    assert "config/text_summary" in events.Tags()["tensors"]
    log = read_log(run)
    assert [(s.step, pytest.approx(s.value)) for s in events.Scalars("train/loss")] == [
        (e["step"], e["loss"]) for e in log if "loss" in e
    ]
    assert [(s.step, pytest.approx(s.value)) for s in events.Scalars("eval/loss")] == [
        (e["step"], e["eval_loss"]) for e in log if "eval_loss" in e
    ]


def test_tensorboard_event_reader_loads_every_tag(sft_run):
    assert_tensorboard_has_every_tag(sft_run)


@pytest.mark.slow
def test_a_real_run_of_the_default_model_logs_every_tag(run_settings, default_model_dir, tmp_path):
    run = train_run(
        run_settings,
        tmp_path / "real",
        model_name_or_path="smollm2-135m-instruct",
        max_steps=4,
        cutoff_len=64,
    )
    assert_tensorboard_has_every_tag(run)
    assert {
        layer
        for e in read_log(run)
        for layer in e.get("weights_by_layer", {}).get("delta_norm", {})
    } == {f"layer_{i:02d}" for i in range(30)}
