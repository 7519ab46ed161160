"""A tiny LoRA chat adapter and small test sets (with and without reference answers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QA = [
    ("What is two plus two?", "Four."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("你好吗？", "我很好，谢谢。"),
    ("How many legs does a spider have?", "Eight."),
]


@pytest.fixture(scope="module")
def qa_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("qa")
    rows = [{"instruction": q, "input": "", "output": a} for q, a in QA]
    (folder / "qa.json").write_text(json.dumps(rows * 6, ensure_ascii=False), encoding="utf-8")
    (folder / "test.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    unanswered = [{"instruction": q} for q, _ in QA]
    (folder / "open.json").write_text(json.dumps(unanswered, ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text(
        json.dumps(
            {
                "qa": {"file_name": "qa.json"},
                "test": {"file_name": "test.json"},
                "open": {"file_name": "open.json"},
            }
        )
    )
    return folder


@pytest.fixture(scope="module")
def chat_adapter(tiny_model_dir, qa_dir, tmp_path_factory) -> Path:
    import tuneforge

    out = tmp_path_factory.mktemp("adapter")
    return tuneforge.train(
        {
            "model_name_or_path": str(tiny_model_dir),
            "dataset": "qa",
            "dataset_dir": str(qa_dir),
            "cutoff_len": 64,
            "output_dir": str(out),
            "overwrite_output_dir": True,
            "learning_rate": 5e-2,
            "num_train_epochs": 3,
            "report_to": "none",
            "seed": 3,
        }
    ).output_dir


@pytest.fixture()
def eval_config(qa_dir) -> dict:
    return {
        "eval_dataset": "test",
        "dataset_dir": str(qa_dir),
        "max_new_tokens": 8,
        "infer_dtype": "float32",
        "per_device_eval_batch_size": 3,
        "do_train": False,
    }
