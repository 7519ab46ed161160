"""Tiny training runs shared by the monitor tests: trained once per session, read many times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monitor_helpers import train_run

PAIRS = {
    "Which planet is called the red planet?": "Mars.",
    "What do bees make?": "Honey.",
    "How many hours are in a day?": "Twenty-four.",
    "What is frozen water called?": "Ice.",
    "Which animal says moo?": "A cow.",
    "What colour is grass?": "Green.",
    "一周有几天？": "七天。",
    "中国的首都是哪里？": "北京。",
}


@pytest.fixture(scope="session")
def monitor_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("monitor-data")
    rows = [
        {"instruction": q, "input": "", "output": a} for _ in range(5) for q, a in PAIRS.items()
    ]
    (folder / "pairs.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (folder / "notes.txt").write_text(
        "\n".join(f"{q} {a}" for q, a in PAIRS.items()) * 3, encoding="utf-8"
    )
    (folder / "dataset_info.json").write_text(
        json.dumps(
            {
                "pairs": {"file_name": "pairs.json"},
                "notes": {"file_name": "notes.txt", "columns": {"prompt": "text"}},
            }
        )
    )
    return folder


@pytest.fixture(scope="session")
def run_settings(tiny_model_dir, monitor_data) -> dict:
    """A short LoRA run with validation every 2 steps; tests copy and change it."""
    return {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": "pairs",
        "dataset_dir": str(monitor_data),
        "cutoff_len": 48,
        "val_size": 8,
        "eval_steps": 2,
        "logging_steps": 1,
        "per_device_train_batch_size": 4,
        "learning_rate": 2e-2,
        "lr_scheduler_type": "cosine",
        "warmup_steps": 2,
        "max_steps": 6,
        "save_steps": 3,
        "report_to": "tensorboard",
        "seed": 3,
    }


@pytest.fixture(scope="session")
def sweep_runs(run_settings, tmp_path_factory) -> list[Path]:
    """Three runs of a learning-rate sweep, the first also the run most tests read."""
    root = tmp_path_factory.mktemp("sweep")
    return [
        train_run(run_settings, root / f"lr-{lr:g}", learning_rate=lr) for lr in (2e-2, 5e-3, 1e-3)
    ]


@pytest.fixture(scope="session")
def sft_run(sweep_runs) -> Path:
    return sweep_runs[0]
