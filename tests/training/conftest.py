"""Fixtures for end-to-end training on the tiny random model: small data written on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QA = [
    ("What is two plus two?", "Four."),
    ("Name a primary colour.", "Red is a primary colour."),
    ("What is the capital of France?", "Paris is the capital of France."),
    ("Translate 'cat' to French.", "Chat."),
    ("你好吗？", "我很好，谢谢。"),
    ("天空是什么颜色？", "天空通常是蓝色的。"),
    ("Give me a synonym for happy.", "Joyful."),
    ("How many legs does a spider have?", "Eight."),
]


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"instruction": q, "input": "", "output": a} for q, a in QA * 4]
    (folder / "qa.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    text = "\n".join(f"{q} {a}" for q, a in QA * 3)
    (folder / "corpus.txt").write_text(text, encoding="utf-8")
    (folder / "dataset_info.json").write_text(
        json.dumps(
            {
                "qa": {"file_name": "qa.json"},
                "corpus": {"file_name": "corpus.txt", "columns": {"prompt": "text"}},
            }
        )
    )
    return folder


@pytest.fixture()
def base_config(tiny_model_dir, data_dir, tmp_path) -> dict:
    return {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": "qa",
        "dataset_dir": str(data_dir),
        "cutoff_len": 64,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "learning_rate": 5e-2,
        "num_train_epochs": 2,
        "logging_steps": 1,
        "save_steps": 4,
        "report_to": "none",
        "seed": 7,
    }
