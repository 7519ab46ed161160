"""Stages dpo, kto and rm end to end on the tiny random model, through trl."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
import yaml

import tuneforge
from tuneforge.errors import ConfigError
from tuneforge.layout import MARKER

PAIRS = [
    ("What is two plus two?", "Four.", "Well, let me think about it for a while... four, maybe."),
    ("Capital of France?", "Paris.", "Hmm, what a question! Many say it might be Paris."),
    ("天空是什么颜色？", "蓝色。", "啊，这个问题很有意思，让我想一想，大概是蓝色吧。"),
    ("Name a fruit.", "An apple.", "Oh, so many fruits exist! I suppose an apple, perhaps."),
]


@pytest.fixture()
def pref_dir(data_dir):
    rows = [{"instruction": q, "input": "", "chosen": c, "rejected": r} for q, c, r in PAIRS * 4]
    (data_dir / "pairs.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    kto = [
        {
            "messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": answer},
            ],
            "label": good,
        }
        for q, c, r in PAIRS * 2
        for answer, good in ((c, True), (r, False))
    ]
    (data_dir / "kto.json").write_text(json.dumps(kto, ensure_ascii=False), encoding="utf-8")
    info = json.loads((data_dir / "dataset_info.json").read_text())
    info["pairs"] = {"file_name": "pairs.json", "ranking": True}
    info["kto"] = {
        "file_name": "kto.json",
        "formatting": "sharegpt",
        "columns": {"messages": "messages", "kto_tag": "label"},
        "tags": {
            "role_tag": "role",
            "content_tag": "content",
            "user_tag": "user",
            "assistant_tag": "assistant",
        },
    }
    (data_dir / "dataset_info.json").write_text(json.dumps(info))
    return data_dir


@pytest.fixture()
def dpo_config(base_config, pref_dir):
    return {
        **base_config,
        "stage": "dpo",
        "dataset": "pairs",
        "val_size": 4,
        "max_steps": 4,
        "learning_rate": 5e-3,
        "eval_steps": 2,
        "per_device_eval_batch_size": 4,
    }


def log_entries(out) -> list[dict]:
    return [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]


def test_dpo_learns_the_preferred_answers_and_logs_rewards(dpo_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from tuneforge.monitor.report import write_report

    result = tuneforge.train({**dpo_config, "max_steps": 8, "report_to": "tensorboard"})
    entries = log_entries(result.output_dir)
    evals = [e for e in entries if "eval_rewards/margins" in e]
    assert evals and {"eval_rewards/chosen", "eval_rewards/rejected"} <= set(evals[-1])
    assert evals[-1]["eval_rewards/margins"] > evals[0]["eval_rewards/margins"]
    assert evals[-1]["eval_rewards/accuracies"] == 1.0
    train = [e for e in entries if "loss" in e]
    assert train[-1]["loss"] < train[0]["loss"]
    assert (result.output_dir / "adapter_model.safetensors").is_file()
    config = yaml.safe_load((result.output_dir / "tuneforge_config.yaml").read_text())
    assert config["stage"] == "dpo" and config["pref_beta"] == 0.1

    (events,) = (result.output_dir / "runs").iterdir()
    tags = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert any(tag.endswith("rewards/margins") for tag in tags)
    write_report(result.output_dir)
    assert (result.output_dir / "plots" / "margin.png").is_file()


@pytest.mark.parametrize(
    "settings",
    [
        {"pref_loss": "ipo"},
        {"pref_loss": "hinge", "pref_ftx": 0.5},
        {"pref_loss": "orpo"},
        {"pref_loss": "simpo", "simpo_gamma": 0.3},
        {"pref_loss": "robust", "dpo_label_smoothing": 0.1},
    ],
    ids=lambda s: s["pref_loss"],
)
def test_every_pref_loss_trains(dpo_config, settings):
    result = tuneforge.train({**dpo_config, **settings, "max_steps": 2, "val_size": 0})
    losses = [e["loss"] for e in log_entries(result.output_dir) if "loss" in e]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_lora_dpo_keeps_no_second_copy_of_the_weights(dpo_config, monkeypatch):
    from tuneforge.training import preference

    built = {}
    original = preference.build_trainer

    def keep(*args, **kwargs):
        built["trainer"] = original(*args, **kwargs)
        return built["trainer"]

    monkeypatch.setattr(preference, "build_trainer", keep)
    tuneforge.train({**dpo_config, "max_steps": 1, "val_size": 0})
    assert built["trainer"].ref_model is None  # the adapter is switched off instead
    assert list(built["trainer"].model.peft_config) == ["default"]
    tuneforge.train(
        {
            **dpo_config,
            "max_steps": 1,
            "val_size": 0,
            "finetuning_type": "freeze",
            "overwrite_output_dir": True,
        }
    )
    reference = built["trainer"].ref_model
    assert reference is not None and not any(p.requires_grad for p in reference.parameters())


def test_dpo_continuing_an_sft_adapter_uses_it_as_the_reference(dpo_config, tiny_adapter_dir):
    settings = {**dpo_config, "max_steps": 1, "val_size": 0}
    settings.update(adapter_name_or_path=str(tiny_adapter_dir), lora_rank=4)
    out = tuneforge.train(settings).output_dir
    assert (out / "ref" / "adapter_model.safetensors").is_file()  # trl's frozen copy
    tuneforge.train({**settings, "overwrite_output_dir": True})  # a run's own files


def test_kto_trains_on_marked_answers(dpo_config):
    result = tuneforge.train({**dpo_config, "stage": "kto", "dataset": "kto", "val_size": 0})
    losses = [e["loss"] for e in log_entries(result.output_dir) if "loss" in e]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_reward_model_scores_pairs_and_loads_with_plain_peft(dpo_config, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    result = tuneforge.train({**dpo_config, "stage": "rm", "max_steps": 6})
    evals = [e for e in log_entries(result.output_dir) if "eval_accuracy" in e]
    assert evals and 0.0 <= evals[-1]["eval_accuracy"] <= 1.0 and "eval_margin" in evals[-1]

    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model = PeftModel.from_pretrained(base, result.output_dir)
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 1)

    answers = tmp_path / "answers.jsonl"
    rows = [{"instruction": q, "input": "", "output": a} for q, c, r in PAIRS for a in (c, r)]
    answers.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
    config = tuneforge.load_config({**dpo_config, "stage": "rm", "do_train": False})
    from tuneforge.eval.evaluate import predict

    scored = predict(config, str(result.output_dir), answers, tmp_path / "scored.jsonl")
    lines = [json.loads(line) for line in scored.read_text().splitlines()]
    assert [line["output"] for line in lines] == [row["output"] for row in rows]
    assert all(isinstance(line["reward"], float) for line in lines)


def test_eval_compares_base_and_tuned_on_held_out_pairs(dpo_config, tmp_path):
    result = tuneforge.train({**dpo_config, "max_steps": 8})
    config = {**dpo_config, "do_train": False, "max_new_tokens": 4}
    report = tuneforge.evaluate(config, str(result.output_dir), tmp_path / "eval")
    metrics = report.metrics
    assert metrics["pairs"] == 4
    assert set(metrics["base"]) >= {"accuracy", "accuracy_summed", "margin_per_token"}
    assert metrics["tuned"]["margin_per_token"] > metrics["base"]["margin_per_token"]
    assert metrics["implicit_reward"]["accuracy"] == 1.0
    assert "implicit reward" in report.text and "base:" in report.text


KILLER = textwrap.dedent("""
    import os, signal, sys
    from transformers import TrainerCallback
    import tuneforge
    from tuneforge.training import preference

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    build = preference.build_trainer
    def build_and_arm(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(Kill())
        return trainer
    preference.build_trainer = build_and_arm
    tuneforge.train(tuneforge.load_config(sys.argv[1]))
""")


def test_dpo_resumes_exactly_after_sigkill(dpo_config, tmp_path):
    settings = {**dpo_config, "val_size": 0, "max_steps": 8, "save_steps": 4}
    reference = tuneforge.train({**settings, "output_dir": str(tmp_path / "reference")})
    expected = [e for e in log_entries(reference.output_dir) if "loss" in e][-1]

    killed = tmp_path / "killed"
    config = tmp_path / "killed.yaml"
    config.write_text(yaml.safe_dump({**settings, "output_dir": str(killed)}))
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(config), "6"], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (killed / "checkpoint-4" / MARKER).is_file()

    tuneforge.train({**settings, "output_dir": str(killed), "resume_from_checkpoint": True})
    resumed = [e for e in log_entries(killed) if "loss" in e]
    assert [e["step"] for e in resumed] == list(range(1, 9))
    assert resumed[-1]["loss"] == pytest.approx(expected["loss"], abs=1e-4)


def test_a_reference_model_with_another_vocabulary_is_refused(dpo_config, tiny_model_dir, tmp_path):
    import shutil

    from transformers import AutoTokenizer

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<extra_token>"])
    tokenizer.save_pretrained(other)
    with pytest.raises(ConfigError, match="ref_model: .* has a different tokenizer"):
        tuneforge.train({**dpo_config, "ref_model": str(other), "val_size": 0})
    assert not (tmp_path / "out").exists()  # refused before anything was written
