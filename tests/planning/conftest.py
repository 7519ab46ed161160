"""Fixtures for plan tests: a tiny QA dataset, a config for the tiny model, a fake device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tuneforge.planning import memory
from tuneforge.planning import report as plan_report

QA = [
    ("What is two plus two?", "Four."),
    ("Name a primary colour.", "Red."),
    ("What is the capital of France?", "Paris."),
    ("你好吗？", "我很好，谢谢。"),
    ("How many legs does a spider have?", "Eight."),
    ("天空是什么颜色？", "蓝色。"),
]


@pytest.fixture()
def qa_dir(tmp_path) -> Path:
    """A folder registering ``qa``: OpenAI-style conversations, one JSON line each."""
    folder = tmp_path / "data"
    folder.mkdir()
    lines = (
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
            },
            ensure_ascii=False,
        )
        for question, answer in QA * 4
    )
    (folder / "qa.jsonl").write_text("\n".join(lines), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"qa": {"file_name": "qa.jsonl"}}))
    return folder


@pytest.fixture()
def tiny_config(tiny_model_dir, qa_dir, tmp_path) -> dict:
    return {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": "qa",
        "dataset_dir": str(qa_dir),
        "cutoff_len": 64,
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "logging_steps": 1,
        "report_to": "none",
        "seed": 7,
        "bf16": False,
    }


@pytest.fixture()
def device_of(monkeypatch):
    """device_of(gb): make the plan see a device with `gb` GB free."""

    def set_device(gb: float) -> None:
        fake = memory.DeviceMemory("test device", int(gb * 1e9), int(gb * 1e9))
        monkeypatch.setattr(plan_report, "device_memory", lambda hardware: fake)

    return set_device
