"""The Train and Evaluate tabs for the preference stages (rm, dpo, kto), without a browser:
the form's stage-specific keys, the dataset preview of ranking and kto data, and the
preference metrics table with the reward model passed on to ``tuneforge.eval``."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tuneforge.errors import DataError
from tuneforge.layout import CONFIG_NAME
from tuneforge.webui import form, sources
from tuneforge.webui.locales import text

gr = pytest.importorskip("gradio")

PAIRS = [
    ("What is two plus two?", "Four.", "Well, let me think about it for a while... four, maybe."),
    ("天空是什么颜色？", "蓝色。", "啊，这个问题很有意思，让我想一想，大概是蓝色吧。"),
]


def _values(**changes):
    return {**form.default_values(), **changes}


@pytest.fixture()
def pref_dir(tmp_path):
    """LLaMA-Factory's three kinds of preference data: alpaca and sharegpt pairs, kto rows."""
    folder = tmp_path / "data"
    folder.mkdir()
    alpaca = [{"instruction": q, "input": "", "chosen": c, "rejected": r} for q, c, r in PAIRS]
    sharegpt = [
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": q},
            ],
            "chosen": {"from": "gpt", "value": c},
            "rejected": {"from": "gpt", "value": r},
        }
        for q, c, r in PAIRS
    ]
    kto = [
        {
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            "tag": t,
        }
        for q, c, r in PAIRS
        for a, t in ((c, True), (r, False))
    ]
    for name, rows in (("pairs", alpaca), ("chat_pairs", sharegpt), ("kto", kto)):
        (folder / f"{name}.json").write_text(json.dumps(rows, ensure_ascii=False), "utf-8")
    info = {
        "pairs": {"file_name": "pairs.json", "ranking": True},
        "chat_pairs": {
            "file_name": "chat_pairs.json",
            "ranking": True,
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "chosen": "chosen", "rejected": "rejected"},
        },
        "kto": {
            "file_name": "kto.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "kto_tag": "tag"},
            "tags": {
                "role_tag": "role",
                "content_tag": "content",
                "user_tag": "user",
                "assistant_tag": "assistant",
            },
        },
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


# The Train tab: keys, hints, visibility


def test_preference_keys_are_written_only_for_the_stages_that_use_them():
    chosen = {"pref_beta": "0.2", "pref_loss": "simpo", "kto_chosen_weight": "2"}
    dpo = form.to_config(_values(stage="dpo", **chosen))
    assert dpo["pref_beta"] == 0.2 and dpo["pref_loss"] == "simpo"
    assert "kto_chosen_weight" not in dpo
    kto = form.to_config(_values(stage="kto", **chosen))
    assert kto["pref_beta"] == 0.2 and kto["kto_chosen_weight"] == 2
    assert "pref_loss" not in kto
    for stage in ("sft", "rm"):
        config = form.to_config(_values(stage=stage, **chosen))
        assert set(config) & set(form.STAGE_KEYS) == set()
    values = _values(stage="dpo", dataset=["pairs"], pref_beta="0.2", pref_loss="simpo")
    assert form.from_config(form.to_config(values)) == values


def test_a_loaded_config_keeps_keys_its_stage_does_not_show_in_the_yaml_box():
    values = form.from_config({"stage": "sft", "pref_beta": 0.3, "ref_model": "other"})
    assert values["pref_beta"] == "0.1" and values["ref_model"] is None  # hidden fields
    assert yaml.safe_load(values["extra"]) == {"pref_beta": 0.3, "ref_model": "other"}
    config = form.to_config(values)
    assert config["pref_beta"] == 0.3 and config["ref_model"] == "other"
    _, problems = form.validate({**values, "dataset": ["pairs"]})
    assert problems == {"extra": ["ref_model applies to stages dpo and kto only"]}  # not hidden


def test_preference_problems_are_placed_under_their_fields():
    _, problems = form.validate(
        _values(stage="dpo", dataset=["pairs"], pref_beta="0", ref_model_adapters="saves/ref")
    )
    assert problems["pref_beta"] == ["pref_beta=0: Input should be greater than 0"]
    assert problems["ref_model_adapters"] == ["ref_model_adapters needs ref_model (its base)"]
    _, problems = form.validate(
        _values(stage="kto", dataset=["kto"], per_device_train_batch_size="1")
    )
    assert problems["per_device_train_batch_size"][0].startswith(
        "stage kto needs per_device_train_batch_size >= 2"
    )


@pytest.mark.parametrize(
    ("stage", "shown"),
    [
        ("dpo", [True, True, True, False]),
        ("kto", [True, True, False, True]),
        ("rm", [False, False, False, False]),
        ("sft", [False, False, False, False]),
    ],
)
def test_the_section_shows_the_rows_of_the_chosen_stage(stage, shown):
    from tuneforge.webui.train_tab import stage_rows

    assert [update["visible"] for update in stage_rows(stage)] == shown


def test_stages_and_preference_keys_are_offered_and_hinted_in_both_languages():
    from tuneforge.webui.train_tab import _widget

    _, _, stages = _widget("stage")
    assert [value for _, value in stages or []] == ["sft", "pt", "cls", "rm", "dpo", "kto"]
    _, _, losses = _widget("pref_loss")
    assert {"sigmoid", "ipo", "hinge", "orpo", "simpo", "robust"} <= {v for _, v in losses or []}
    for key in form.STAGE_KEYS:
        assert text(f"hint.{key}", "en").startswith(form.schema_field(key).description)
        assert text(f"hint.{key}", "zh") != text(f"hint.{key}", "en")
    assert "kto" in text("hint.stage", "zh") and "奖励模型" in text("hint.stage", "zh")
    assert text("section.preference", "zh") == "### 偏好训练（dpo / kto）"


# The Train tab: the dataset preview


def test_the_preview_shows_pairs_as_training_reads_them(pref_dir):
    columns, rows = sources.preview_rows(str(pref_dir), ["pairs", "chat_pairs"], "dpo")
    assert columns == ["dataset", "messages", "chosen", "rejected"]
    assert rows[0] == ["pairs", "user: What is two plus two?", PAIRS[0][1], PAIRS[0][2]]
    assert rows[3] == [
        "chat_pairs",
        "system: Be brief.\nuser: 天空是什么颜色？",
        "蓝色。",
        PAIRS[1][2],
    ]


def test_the_kto_preview_shows_marked_answers_from_kto_rows_and_from_pairs(pref_dir):
    columns, rows = sources.preview_rows(str(pref_dir), ["kto", "pairs"], "kto")
    assert columns == ["dataset", "messages", "completion", "label"]
    marks = [(row[0], row[2], row[3]) for row in rows]
    assert marks[:2] == [("kto", "Four.", "True"), ("kto", PAIRS[0][2], "False")]
    assert marks[4:6] == [("pairs", "Four.", "True"), ("pairs", PAIRS[0][2], "False")]


def test_the_preview_says_when_the_stage_cannot_use_the_data(pref_dir):
    from tuneforge.webui.train_tab import _preview_samples

    with pytest.raises(DataError, match="is preference data"):
        sources.preview_rows(str(pref_dir), ["pairs"], "sft")
    table, slot = _preview_samples(str(pref_dir), ["pairs"], "sft")
    assert table["visible"] is False and slot["visible"] is True
    assert "which stage sft cannot use; use it with stage dpo, kto or rm" in slot["value"]


# The Evaluate tab

DPO_METRICS = {
    "pairs": 4,
    "tuned": {"accuracy": 0.75, "accuracy_summed": 0.5, "margin_per_token": 0.2},
    "base": {"accuracy": 0.25, "accuracy_summed": 0.5, "margin_per_token": -0.1},
    "implicit_reward": {"accuracy": 1.0, "margin": 0.31234},
    "win_rate": 0.6,
}


def _texts():
    from tuneforge.webui.widgets import Texts

    return Texts("en")


def test_dpo_metrics_show_base_beside_tuned_and_the_tuned_models_own():
    from tuneforge.webui.eval_tab import metrics_frame

    frame = metrics_frame(_texts(), "en", DPO_METRICS, "dpo")["value"]
    assert list(frame.columns) == ["metric", "base", "tuned", "change"]
    rows = frame.values.tolist()
    assert rows[0] == ["held-out pairs", 4, 4, ""]
    assert rows[1] == ["chosen more likely than rejected (per token)", 0.25, 0.75, 0.5]
    assert rows[3] == ["mean log-probability margin per token", -0.1, 0.2, 0.3]
    assert rows[4:] == [
        ["implicit reward: chosen above rejected", "", 1.0, ""],
        ["implicit reward: mean margin", "", 0.3123, ""],
        ["win rate over base (reward model)", "", 0.6, ""],
    ]
    zh = metrics_frame(_texts(), "zh", DPO_METRICS, "kto")["value"]
    assert list(zh.columns) == ["指标", "基础模型", "微调后", "变化"]
    assert zh.values.tolist()[-1][0] == "相对基础模型的胜率（奖励模型打分）"


def test_a_reward_models_metrics_are_its_own():
    from tuneforge.webui.eval_tab import metrics_frame

    metrics = {"pairs": 4, "model": {"accuracy": 0.75, "margin": 1.5, "new_score": 2}}
    frame = metrics_frame(_texts(), "en", metrics, "rm")["value"]
    assert frame.values.tolist() == [
        ["held-out pairs", 4],
        ["pairwise accuracy (chosen scored higher)", 0.75],
        ["mean reward margin", 1.5],
        ["new_score", 2],  # a metric without a label yet shows its key
    ]
    assert metrics_frame(_texts(), "en", {}, "rm")["visible"] is False


@pytest.fixture()
def dpo_run(tmp_path, tiny_adapter_dir, tiny_model_dir, pref_dir):
    """A finished dpo run as it lies on disk: a LoRA adapter with its config."""
    run = tmp_path / "saves" / "dpo"
    shutil.copytree(tiny_adapter_dir, run)
    config = {
        "model_name_or_path": str(tiny_model_dir),
        "stage": "dpo",
        "dataset": ["pairs"],
        "dataset_dir": str(pref_dir),
        "cutoff_len": 64,
        "output_dir": str(run),
        "report_to": "none",
    }
    (run / CONFIG_NAME).write_text(yaml.safe_dump(config))
    return run


def test_the_reward_model_goes_to_eval_for_dpo_and_kto_runs_only(dpo_run, monkeypatch):
    import tuneforge
    from tuneforge.webui.eval_tab import evaluate_run

    calls = []
    monkeypatch.setattr(tuneforge, "evaluate", lambda cfg, **kw: calls.append((cfg, kw)) or "r")
    report, stage = evaluate_run(str(dpo_run), ["pairs"], 16, 2, " saves/rm ")
    ((cfg, kwargs),) = calls
    assert (report, stage) == ("r", "dpo")
    assert kwargs == {"adapter": str(dpo_run), "reward_model": "saves/rm"}
    assert cfg.data.eval_dataset == ["pairs"] and cfg.data.val_size == 0
    assert cfg.generation.max_new_tokens == 16 and cfg.train.per_device_eval_batch_size == 2
    evaluate_run(str(dpo_run), reward_model="")
    assert calls[-1][1]["reward_model"] is None
    config = yaml.safe_load((dpo_run / CONFIG_NAME).read_text())
    (dpo_run / CONFIG_NAME).write_text(yaml.safe_dump({**config, "stage": "rm"}))
    assert evaluate_run(str(dpo_run), reward_model="saves/rm")[1] == "rm"
    assert calls[-1][1]["reward_model"] is None


def test_only_reward_models_are_offered_as_reward_models(dpo_run, tmp_path):
    config = yaml.safe_load((dpo_run / CONFIG_NAME).read_text())
    rm = tmp_path / "saves" / "rm"
    shutil.copytree(dpo_run, rm)
    (rm / CONFIG_NAME).write_text(yaml.safe_dump({**config, "stage": "rm"}))
    assert sources.reward_model_choices(roots=[tmp_path / "saves"]) == [str(rm)]


def test_a_real_evaluation_of_a_dpo_run_fills_the_table_with_labelled_rows(dpo_run):
    from tuneforge.monitor.runlog import read_run
    from tuneforge.webui.eval_tab import evaluate_run, metrics_frame

    report, stage = evaluate_run(str(dpo_run), ["pairs"], max_new_tokens=2, batch_size=2)
    assert "implicit reward" in report.text and "base:" in report.text
    frame = metrics_frame(_texts(), "en", report.metrics, stage)["value"]
    shown = frame["metric"].tolist()
    assert shown[0] == "held-out pairs" and "implicit reward: mean margin" in shown
    assert [name for name in shown if "_" in name or "." in name] == []  # all labelled
    saved = metrics_frame(_texts(), "en", read_run(dpo_run).evaluation, stage)["value"]
    assert saved.equals(frame)  # a run picked later shows the same table
