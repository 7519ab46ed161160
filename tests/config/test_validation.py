"""Validation is one pure pass that reports every problem with its key; configs are frozen and
change only through `replace`, which validates the same way."""

from __future__ import annotations

import builtins
import importlib.util
import os

import pytest
from pydantic import ValidationError

from tuneforge.config import check_environment, load_config, replace
from tuneforge.errors import ConfigError, Problem


def error(source, **changes) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        replace(load_config(source), **changes) if changes else load_config(source)
    return info.value


def test_field_and_cross_field_problems_come_together_with_their_keys():
    exc = error({"dataset": "x", "learning_rate": -1, "bf16": True, "fp16": True})
    assert exc.problems == (
        Problem("learning_rate", "learning_rate=-1: Input should be greater than 0"),
        Problem("bf16", "bf16 and fp16 are both true; choose one"),
    )
    assert exc.lines == [
        "config: learning_rate=-1: Input should be greater than 0",
        "config: bf16 and fp16 are both true; choose one",
    ]


def test_a_cross_field_check_on_a_key_that_failed_is_skipped():
    # stage is invalid, so "eval_accuracy is not a metric of stage sft" would be made up.
    exc = error({"dataset": "x", "stage": "clss", "metric_for_best_model": "eval_accuracy"})
    assert [problem.key for problem in exc.problems] == ["stage"]
    exc = error({"dataset": "x", "stage": "ppo", "label_names": "a,b", "bf16": 1, "fp16": 1})
    assert [problem.key for problem in exc.problems] == ["stage", "bf16"]


def test_unknown_keys_and_list_items_are_keyed_by_the_key_typed():
    exc = error({"dataset": "x", "lora_rnak": 4, "report_to": "slack"})
    assert [problem.key for problem in exc.problems] == ["lora_rnak", "report_to"]
    assert exc.problems[1].message.startswith("report_to.0='slack': allowed: none")


def test_validation_reads_no_file_and_probes_no_package(monkeypatch, tmp_path):
    raw = {
        "dataset": "x",
        "deepspeed": str(tmp_path / "missing.json"),
        "quantization_bit": 4,
        "optim": "adamw_bnb_8bit",
        "report_to": "wandb",
        "enable_liger_kernel": True,
    }
    load_config(raw)  # every import done

    def forbidden(*args, **kwargs):
        raise AssertionError("validation touched the machine")

    for owner, name in [
        (builtins, "open"),
        (os, "stat"),
        (os, "lstat"),
        (os, "scandir"),
        (importlib.util, "find_spec"),
    ]:
        monkeypatch.setattr(owner, name, forbidden)
    cfg = load_config(raw)
    monkeypatch.undo()
    assert cfg.train.deepspeed == raw["deepspeed"]
    with pytest.raises(ConfigError) as info:
        check_environment(cfg)
    assert f"config: deepspeed='{raw['deepspeed']}': no such file" in info.value.lines[0]


def test_configs_are_frozen():
    cfg = load_config({"dataset": "x"})
    with pytest.raises(ValidationError, match="frozen"):
        cfg.train.learning_rate = 1.0
    with pytest.raises(ValidationError, match="frozen"):
        cfg.generation = cfg.generation
    assert cfg.train.learning_rate == 1e-4


def test_replace_validates_the_changed_config_as_a_whole():
    cfg = load_config({"dataset": "x", "lora_rank": 4})
    changed = replace(cfg, learning_rate=2e-4, val_size=0.1)
    assert (changed.train.learning_rate, changed.data.val_size) == (2e-4, 0.1)
    assert changed.finetune.lora_rank == 4 and cfg.train.learning_rate == 1e-4
    assert "packing" not in changed.flat(only_set=True)  # unset keys stay unset
    exc = error({"dataset": "x"}, learning_rate=-1, fp16=True, bf16=True, lora_rnak=2)
    assert [problem.key for problem in exc.problems] == ["lora_rnak", "learning_rate", "bf16"]
    exc = error({"dataset": "x", "val_size": 0.1}, eval_dataset="y")
    assert exc.lines == ["config: val_size and eval_dataset are both set; use one of them"]
