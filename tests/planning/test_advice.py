"""Hyper-parameter advice: each rule flags what it should and passes what it should."""

from __future__ import annotations

import pytest

import tuneforge
from tuneforge.planning.advice import advise
from tuneforge.planning.shape import model_shape


@pytest.fixture(scope="module")
def shapes(tiny_model_dir):
    """Shapes of the tiny model by LoRA rank (r=64 trains 8x what r=8 does)."""

    def shape(**keys):
        return model_shape(
            tuneforge.load_config(
                {"model_name_or_path": str(tiny_model_dir), "dataset": "x", **keys}
            )
        )

    return shape


def rows(shape_of, samples, **keys):
    cfg = tuneforge.load_config({"dataset": "x", **keys})
    return {
        row.setting: row
        for row in advise(
            cfg,
            shape_of(**{k: v for k, v in keys.items() if k in ("lora_rank", "finetuning_type")}),
            samples,
        )
    }


def test_alpha_far_above_twice_the_rank_is_flagged(shapes):
    flagged = rows(shapes, 5000, lora_rank=8, lora_alpha=128)["lora_alpha"]
    assert not flagged.ok and flagged.value == "128 (16 x r=8)"
    assert flagged.advised == "8-16 (r to 2r)"
    assert rows(shapes, 5000, lora_rank=8, lora_alpha=16)["lora_alpha"].ok
    assert rows(shapes, 5000, lora_rank=8)["lora_alpha"].ok  # the default, 2 x rank


def test_high_rank_with_little_data_is_flagged_with_params_per_sample(shapes):
    high = rows(shapes, 1000, lora_rank=64)["lora_rank"]
    assert not high.ok and high.advised == "8-16" and "per sample" in high.value
    assert rows(shapes, 1000, lora_rank=8)["lora_rank"].ok
    assert rows(shapes, 50_000, lora_rank=64)["lora_rank"].ok


@pytest.mark.parametrize(
    ("samples", "epochs", "ok"),
    [
        (500, 3, True),
        (500, 1, False),
        (50_000, 3, True),
        (50_000, 8, False),
        (500_000, 1, True),
        (500_000, 3, True),
        (500_000, 4, False),
    ],
)
def test_epochs_follow_the_data_size(shapes, samples, epochs, ok):
    assert rows(shapes, samples, num_train_epochs=epochs)["num_train_epochs"].ok is ok


def test_learning_rate_for_lora_is_ten_times_full_finetuning(shapes):
    lora = rows(shapes, 5000, learning_rate=5e-4)["learning_rate"]
    full = rows(shapes, 5000, learning_rate=5e-4, finetuning_type="full")["learning_rate"]
    assert lora.ok and lora.advised == "0.0005-0.001"
    assert not full.ok and full.advised == "5e-05-0.0001"


def test_warmup_validation_and_batch(shapes):
    advice = rows(
        shapes,
        2000,
        warmup_ratio=0.1,
        per_device_train_batch_size=4,
        gradient_accumulation_steps=4,
        val_size=0.1,
        early_stopping_steps=3,
    )
    assert advice["warmup"].ok and advice["validation"].ok and advice["early_stopping_steps"].ok
    assert advice["effective batch size"].value.startswith("16 = 4 x 4")
    bare = rows(shapes, 2000)
    assert not bare["warmup"].ok and not bare["validation"].ok
    assert not bare["early_stopping_steps"].ok and not bare["effective batch size"].ok


def test_full_finetuning_on_little_data_advises_lora(shapes):
    advice = rows(shapes, 800, finetuning_type="full", learning_rate=5e-5)
    assert not advice["finetuning_type"].ok and advice["finetuning_type"].advised == "lora"
