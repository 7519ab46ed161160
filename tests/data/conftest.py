"""Helpers for data tests: write a dataset folder into tmp_path, build a RunConfig for it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tuneforge.config.schema import RunConfig


@pytest.fixture
def make_data(tmp_path: Path) -> Callable[..., Path]:
    """make_data(info, {name: rows or text}) -> the dataset folder.

    A list of rows is written as JSON lines for ``.jsonl`` and as a JSON list otherwise;
    a string is written as it is (for malformed files and ``.txt``)."""

    def make(info: dict[str, Any], files: dict[str, Any]) -> Path:
        folder = tmp_path / "data"
        folder.mkdir(exist_ok=True)
        for name, content in files.items():
            path = folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content, encoding="utf-8")
            elif name.endswith(".jsonl"):
                path.write_text("".join(json.dumps(row) + "\n" for row in content))
            else:
                path.write_text(json.dumps(content))
        (folder / "dataset_info.json").write_text(json.dumps(info))
        return folder

    return make


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., RunConfig]:
    """make_config(folder, dataset=..., stage="sft", seed=42, **data keys) -> RunConfig."""

    def make(folder: Path, *, stage: str = "sft", seed: int = 42, **data: Any) -> RunConfig:
        return RunConfig.model_validate(
            {
                "model": {"cache_dir": str(tmp_path / "hf-cache")},
                "data": {"dataset_dir": str(folder), **data},
                "finetune": {"stage": stage},
                "train": {"seed": seed},
            }
        )

    return make
