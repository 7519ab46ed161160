"""`tuneforge eval`: base vs tuned on the same samples, and every bad input in one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tuneforge
from tuneforge.errors import ConfigError, ModelError
from tuneforge.eval import metrics
from tuneforge.eval.evaluate import evaluate
from tuneforge.eval.report import side_by_side


def test_side_by_side_table_shows_delta_of_tuned_over_base():
    table = side_by_side(
        "base", {"bleu": 0.12, "rouge": 0.5}, "tuned", {"bleu": 0.38, "rouge": 0.4}
    )
    assert table.splitlines() == [
        "metric      base     tuned     delta",
        "bleu      0.1200    0.3800   +0.2600",
        "rouge     0.5000    0.4000   -0.1000",
    ]


def test_base_and_tuned_are_scored_on_the_same_samples(chat_adapter, eval_config, tmp_path):
    report = evaluate(tuneforge.load_config(eval_config), str(chat_adapter), tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert saved["samples"] == saved["scored"] == 4
    assert saved["metric_tokenize"] == "jieba (1), words (3)"  # one Chinese sample
    assert (
        set(saved["base"])
        == set(saved["tuned"])
        == {
            "sacrebleu_bleu4",
            "rouge_score_rouge1",
            "rouge_score_rouge2",
            "rouge_score_rougeL",
            "exact_match",
        }
    )
    header, *rows = report.text.split("\n\n")[0].splitlines()[1:]
    assert header.split() == ["metric", "base", "tuned", "delta"]
    bleu = next(row.split() for row in rows if row.startswith("sacrebleu_bleu4"))
    assert float(bleu[3]) == pytest.approx(
        saved["tuned"]["sacrebleu_bleu4"] - saved["base"]["sacrebleu_bleu4"], abs=1e-4
    )
    assert "Where they differ most:" in report.text and "  tuned    : " in report.text
    tuned = (tmp_path / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    base = (tmp_path / "generated_predictions_base.jsonl").read_text(encoding="utf-8")
    assert len(tuned) == len(base.splitlines()) == 4
    assert {json.loads(line)["reference"] for line in tuned} == {
        "Four.",
        "Red is a primary colour.",
        "我很好，谢谢。",
        "Eight.",
    }


def test_without_references_predictions_are_written_and_metrics_skipped(
    chat_adapter, eval_config, tmp_path
):
    cfg = tuneforge.load_config({**eval_config, "eval_dataset": "open"})
    report = evaluate(cfg, str(chat_adapter), tmp_path)
    assert report.text.startswith("No reference answers in the test data: 4 predictions written")
    assert report.text.endswith("metrics skipped.")
    assert "tuned" not in report.metrics and report.metrics["scored"] == 0
    lines = (tmp_path / "generated_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["reference"] for line in lines] == [None] * 4


def test_missing_metric_package_fails_before_any_generation(
    chat_adapter, eval_config, tmp_path, monkeypatch
):
    monkeypatch.setattr(metrics, "GENERATION_PACKAGES", {"no_such_module_xyz": "nope"})
    with pytest.raises(ConfigError, match="needs nope: pip install"):
        evaluate(tuneforge.load_config(eval_config), str(chat_adapter), tmp_path)
    assert not any(tmp_path.iterdir())


def test_adapter_of_another_base_model_is_refused(
    chat_adapter, eval_config, make_tiny_model, tokenizer, tmp_path
):
    other = make_tiny_model(tmp_path / "other", tokenizer, layers=1)
    cfg = tuneforge.load_config({**eval_config, "model_name_or_path": str(other)})
    with pytest.raises(ModelError) as err:
        evaluate(cfg, str(chat_adapter), tmp_path / "out")
    assert len(err.value.lines) == 1
    assert f"{chat_adapter} was trained on '" in err.value.lines[0]
    assert f"the config names model '{other}'" in err.value.lines[0]


def test_adapter_of_another_task_is_refused(chat_adapter, eval_config, tiny_model_dir, tmp_path):
    cls = tuneforge.load_config({**eval_config, "stage": "cls"})
    with pytest.raises(
        ConfigError, match="was trained with stage sft, but the config has stage cls"
    ):
        evaluate(cls, str(chat_adapter), tmp_path)
    from tuneforge.models import load_adapter, load_model

    classifier = load_model(
        tuneforge.load_config({"model_name_or_path": str(tiny_model_dir), "do_train": False}).model,
        labels=["neg", "pos"],
        pad_token_id=2,
    )
    with pytest.raises(
        ModelError,
        match="trained for text generation \\(stage sft or pt\\), "
        "not sequence classification \\(stage cls\\)",
    ):
        load_adapter(classifier, str(chat_adapter), trainable=False)


def test_cli_eval_without_test_data_says_what_to_set(tmp_path):
    config = tmp_path / "eval.yaml"
    config.write_text("dataset_dir: examples/data\n")
    proc = subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "-q", "eval", str(config)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "tuneforge: error: no test data: set eval_dataset (a test set registered in "
        "examples/data/dataset_info.json), or dataset with val_size to use the validation "
        "split training held out"
    ]


def test_predict_refuses_a_generation_adapter(chat_adapter, eval_config, tmp_path):
    from tuneforge.eval.evaluate import predict

    texts = tmp_path / "texts.txt"
    texts.write_text("some text\n")
    with pytest.raises(ModelError, match="not a classifier \\(stage sft, no label_names"):
        predict(tuneforge.load_config(eval_config), str(chat_adapter), texts, tmp_path / "p.jsonl")


def test_do_predict_scores_the_held_out_split_after_training(tiny_model_dir, qa_dir, tmp_path):
    result = tuneforge.train(
        {
            "model_name_or_path": str(tiny_model_dir),
            "dataset": "qa",
            "dataset_dir": str(qa_dir),
            "cutoff_len": 64,
            "output_dir": str(tmp_path / "run"),
            "max_steps": 2,
            "val_size": 4,
            "report_to": "none",
            "do_predict": True,
            "max_new_tokens": 4,
            "infer_dtype": "float32",
        }
    )
    saved = json.loads((result.output_dir / "predict" / "metrics.json").read_text())
    assert saved["scored"] == 4 and {"base", "tuned"} <= saved.keys()
