"""Advice for the preference stages: a learning rate well below SFT's, 1-3 epochs, beta,
KTO's weights for unbalanced good/bad answers, and the reward model's held-out check."""

from __future__ import annotations

import json

import pytest

import tuneforge
from tuneforge.planning.advice import advise
from tuneforge.planning.preference_advice import PreferenceCounts, preference_advice
from tuneforge.planning.report import make_plan
from tuneforge.planning.shape import model_shape


@pytest.fixture(scope="module")
def advice_of(tiny_model_dir):
    """advice_of(samples, counts=None, **keys): the plan's advice rows by setting."""

    def rows(samples, counts=None, **keys):
        cfg = tuneforge.load_config(
            {"model_name_or_path": str(tiny_model_dir), "dataset": "x", **keys}
        )
        table = advise(cfg, model_shape(cfg), samples) + preference_advice(cfg, counts)
        return {row.setting: row for row in table}

    return rows


@pytest.mark.parametrize(("kind", "low", "high"), [("lora", 5e-4, 1e-3), ("full", 5e-5, 1e-4)])
def test_dpo_and_kto_learning_rates_sit_below_sfts(advice_of, kind, low, high):
    assert advice_of(500, finetuning_type=kind)["learning_rate"].advised == f"{low:g}-{high:g}"
    for stage in ("dpo", "kto"):
        row = advice_of(500, stage=stage, finetuning_type=kind, learning_rate=high)["learning_rate"]
        assert row.advised == f"{low / 10:g}-{high / 2:g}" and not row.ok
        assert "below SFT's rate" in row.why
        for inside in (low / 10, high / 2):
            rate = advice_of(500, stage=stage, finetuning_type=kind, learning_rate=inside)
            assert rate["learning_rate"].ok
        assert not advice_of(500, stage=stage, finetuning_type=kind, learning_rate=low / 20)[
            "learning_rate"
        ].ok


def test_preference_tuning_wants_one_to_three_epochs(advice_of):
    assert advice_of(500, num_train_epochs=5)["num_train_epochs"].ok  # sft on 500 samples
    dpo = advice_of(500, stage="dpo", num_train_epochs=5)["num_train_epochs"]
    assert not dpo.ok and dpo.advised == "1-3" and "500 pairs" in dpo.why
    assert advice_of(500, stage="kto", num_train_epochs=2)["num_train_epochs"].ok


@pytest.mark.parametrize(
    ("keys", "ok"),
    [
        ({"pref_beta": 0.1}, True),
        ({"pref_beta": 1.0}, False),
        ({"pref_beta": 0.005}, False),
        ({"pref_loss": "simpo", "pref_beta": 2.5}, True),
        ({"pref_loss": "simpo", "pref_beta": 0.1}, False),
    ],
)
def test_beta_is_checked_against_its_losss_range(advice_of, keys, ok):
    assert advice_of(500, stage="dpo", **keys)["pref_beta"].ok is ok


def test_unbalanced_kto_answers_get_weights_by_trls_rule(advice_of):
    counts = PreferenceCounts(80, good=60, bad=20)
    row = advice_of(80, counts, stage="kto")["kto weights"]
    assert not row.ok and row.value == "1 x 60 good / 1 x 20 bad = 3.00"
    assert row.advised == "kto_chosen_weight 0.33-0.44"  # 0.4 x 60 / (1 x 20) = 1.2
    assert advice_of(80, counts, stage="kto", kto_chosen_weight=0.4)["kto weights"].ok
    balanced = PreferenceCounts(80, good=40, bad=40)
    assert advice_of(80, balanced, stage="kto")["kto weights"].ok


def test_a_reward_model_is_checked_on_held_out_pairs(advice_of):
    row = advice_of(500, stage="rm")["reward model check"]
    assert not row.ok and "held-out pairwise accuracy" in row.why
    assert advice_of(500, stage="rm", val_size=0.1)["reward model check"].ok
    assert "reward model check" not in advice_of(500, stage="dpo")
    assert "pref_beta" not in advice_of(500)


def test_plan_counts_kto_marks_from_the_data(tiny_config, tmp_path, device_of):
    device_of(64)
    folder = tmp_path / "marked"
    folder.mkdir()
    rows = [
        {"instruction": f"Question {i}?", "output": f"Answer {i}.", "kto_tag": i % 4 != 0}
        for i in range(40)
    ]
    (folder / "marked.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(json.dumps({"marked": {"file_name": "marked.json"}}))
    cfg = tuneforge.load_config(
        {**tiny_config, "stage": "kto", "dataset": "marked", "dataset_dir": str(folder)}
    )
    plan = make_plan(cfg)
    row = next(row for row in plan.advice if row.setting == "kto weights")
    assert row.value == "1 x 30 good / 1 x 10 bad = 3.00" and not row.ok
    assert "40 preference samples counted" in plan.text()
