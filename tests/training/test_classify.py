"""Stage cls on the tiny model: training, label names, metrics, baseline, predict, bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import tuneforge
from tuneforge.errors import ConfigError, DataError
from tuneforge.eval.evaluate import evaluate, predict

EXAMPLES = Path(__file__).parents[2] / "examples" / "data"


@pytest.fixture()
def cls_config(tiny_model_dir, tmp_path) -> dict:
    return {
        "model_name_or_path": str(tiny_model_dir),
        "stage": "cls",
        "dataset": "sentiment_en,sentiment_zh",
        "dataset_dir": str(EXAMPLES),
        "cutoff_len": 48,
        "val_size": 0.25,
        "output_dir": str(tmp_path / "cls"),
        "per_device_train_batch_size": 8,
        "learning_rate": 5e-3,
        "num_train_epochs": 2,
        "logging_steps": 3,
        "eval_steps": 3,
        "report_to": "none",
        "seed": 5,
        "infer_dtype": "float32",
    }


def write_labelled(
    folder: Path,
    name: str,
    rows: list[tuple[str, object]],
    *,
    eval_rows: list[tuple[str, object]] | None = None,
) -> str:
    """A CSV dataset (and optional test set) registered in `folder`; returns the folder."""
    folder.mkdir(exist_ok=True)
    info = {}
    for part, part_rows in ((name, rows), (f"{name}_test", eval_rows)):
        if part_rows is None:
            continue
        with open(folder / f"{part}.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(part_rows)
        info[part] = {"file_name": f"{part}.csv"}
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return str(folder)


def log_entries(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]


def test_lora_classifier_reports_metrics_beside_the_baseline_and_predicts(cls_config, tmp_path):
    cls_config.update(early_stopping_steps=2, metric_for_best_model="eval_macro_f1")
    result = tuneforge.train(cls_config)
    out = result.output_dir
    saved = tuneforge.load_config(out / "tuneforge_config.yaml")
    assert saved.data.label_names == ["negative", "positive"]
    adapter = json.loads((out / "adapter_config.json").read_text())
    assert adapter["task_type"] == "SEQ_CLS" and "score" in adapter["modules_to_save"]
    assert any("score" in key for key in load_file(out / "adapter_model.safetensors"))

    evals = [e for e in log_entries(out) if "eval_accuracy" in e]
    assert evals
    for entry in evals:
        assert {
            "eval_macro_f1",
            "eval_precision_negative",
            "eval_recall_positive",
            "eval_baseline_accuracy",
            "eval_baseline_macro_f1",
        } <= entry.keys()
        matrix = json.loads(entry["eval_confusion_matrix"])
        assert len(matrix) == 2 and sum(map(sum, matrix)) == 24  # a quarter of 96 texts
    assert len({e["eval_baseline_accuracy"] for e in evals}) == 1  # fitted once, same split
    if result.best_checkpoint:
        best = max(evals, key=lambda e: e["eval_macro_f1"])["eval_macro_f1"]
        assert result.metrics["eval_macro_f1"] == pytest.approx(best)

    texts = tmp_path / "texts.jsonl"
    texts.write_text(
        '{"text": "The battery died in an hour."}\n{"text": "质量很好"}\n', encoding="utf-8"
    )
    predict(
        tuneforge.load_config({**cls_config, "do_train": False}),
        str(out),
        texts,
        tmp_path / "preds.jsonl",
    )
    lines = [json.loads(line) for line in (tmp_path / "preds.jsonl").read_text().splitlines()]
    assert [line["text"] for line in lines] == ["The battery died in an hour.", "质量很好"]
    for line in lines:
        assert line["label"] == max(line["probabilities"], key=line["probabilities"].get)
        assert sum(line["probabilities"].values()) == pytest.approx(1, abs=1e-4)

    report = evaluate(
        tuneforge.load_config({**cls_config, "do_train": False}), str(out), tmp_path / "eval"
    )
    assert report.metrics["model"]["accuracy"] == pytest.approx(result.metrics["eval_accuracy"])
    assert report.metrics["baseline"]["accuracy"] == evals[0]["eval_baseline_accuracy"]
    assert report.text.splitlines()[1].split() == ["metric", "tfidf", "model", "delta"]


@pytest.mark.parametrize("kind", ["full", "freeze"])
def test_full_and_freeze_save_the_labels_and_train_the_head(cls_config, tiny_model_dir, kind):
    from transformers import AutoModelForSequenceClassification

    cls_config.update(finetuning_type=kind, freeze_trainable_layers=1, num_train_epochs=1)
    out = tuneforge.train(cls_config).output_dir
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert model.config.pad_token_id == 2
    base = load_file(tiny_model_dir / "model.safetensors")
    tuned = model.state_dict()
    assert "score.weight" in tuned
    first_layer = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(tuned[first_layer], base[first_layer]) == (kind == "freeze")


def test_whole_number_labels_keep_their_numbers(cls_config, tmp_path):
    rows = [(f"good thing {i}", 1) for i in range(6)] + [(f"bad thing {i}", 0) for i in range(6)]
    cls_config.update(
        dataset="nums",
        dataset_dir=write_labelled(tmp_path / "d", "nums", rows),
        max_steps=1,
        val_size=0,
    )
    out = tuneforge.train(cls_config).output_dir
    assert tuneforge.load_config(out / "tuneforge_config.yaml").data.label_names == ["0", "1"]


def bad(cls_config, tmp_path, rows, eval_rows=None, **extra) -> list[str]:
    folder = write_labelled(tmp_path / "bad", "d", rows, eval_rows=eval_rows)
    cls_config.update(dataset="d", dataset_dir=folder, val_size=0, **extra)
    with pytest.raises(DataError) as err:
        tuneforge.train(cls_config)
    assert not (tmp_path / "cls").exists()  # refused before anything was written
    return err.value.lines


def test_single_class_is_refused(cls_config, tmp_path):
    lines = bad(cls_config, tmp_path, [("fine", "pos"), ("good", "pos")])
    assert lines == [
        "the training data has a single class ('pos'); a classifier needs at least "
        "two labels (check columns.response in dataset_info.json)"
    ]


def test_test_labels_never_seen_in_training_are_refused(cls_config, tmp_path):
    lines = bad(
        cls_config,
        tmp_path,
        [("fine", "pos"), ("awful", "neg")],
        eval_rows=[("meh", "neutral")],
        eval_dataset="d_test",
    )
    assert lines == [
        "eval_dataset: labels never seen in training: 'neutral' (1 rows); the "
        "training data has: neg, pos"
    ]


def test_empty_text_and_missing_label_column_are_named(cls_config, tmp_path):
    lines = bad(cls_config, tmp_path, [("fine", "pos"), ("", "neg")])
    assert lines == [f"{tmp_path / 'bad' / 'd.csv'}: row 2: empty text in 'text'"]
    (tmp_path / "bad" / "dataset_info.json").write_text(
        json.dumps({"d": {"file_name": "d.csv", "columns": {"response": "sentiment"}}})
    )
    with pytest.raises(
        DataError, match="no label column 'sentiment' \\(stage cls\\); the file has: text, label$"
    ):
        tuneforge.train(cls_config)


def test_best_model_metric_must_exist_for_the_stage(cls_config):
    with pytest.raises(
        ConfigError,
        match="metric_for_best_model='eval_f1': allowed for stage "
        "cls: eval_loss, eval_accuracy, eval_macro_f1",
    ):
        tuneforge.load_config({**cls_config, "metric_for_best_model": "eval_f1"})
    with pytest.raises(ConfigError, match="allowed for stage sft: eval_loss"):
        tuneforge.load_config({**cls_config, "stage": "sft", "metric_for_best_model": "accuracy"})
