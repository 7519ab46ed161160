"""The Train form as a flat config: conversion both ways and validation messages by field."""

from __future__ import annotations

import json

from tuneforge.errors import OutputError, Problem
from tuneforge.webui import form


def _values(**changes):
    return {**form.default_values(), **changes}


def test_defaults_give_the_schema_defaults_and_round_trip():
    values = form.default_values()
    assert values["lora_target"] == "all" and values["precision"] == "auto"
    assert values["max_samples"] == "" and values["template"] == ""
    config = form.to_config(values)
    assert "max_samples" not in config and "template" not in config
    assert config["learning_rate"] == 1e-4 and config["lora_rank"] == 8
    assert form.from_config(config) == values


def test_typed_numbers_precision_and_extra_keys_become_config_values():
    config = form.to_config(
        _values(
            learning_rate="2e-4",
            cutoff_len="64",
            val_size="0.1",
            precision="fp32",
            dataset=["qa"],
            extra="early_stopping_steps: 3\nseed: 7\n",
        )
    )
    assert config["learning_rate"] == 2e-4 and config["cutoff_len"] == 64
    assert config["val_size"] == 0.1 and config["dataset"] == ["qa"]
    assert config["bf16"] is False and config["fp16"] is False
    assert config["early_stopping_steps"] == 3 and config["seed"] == 7
    back = form.from_config(config)
    assert back["precision"] == "fp32"
    assert back["extra"] == "early_stopping_steps: 3\nseed: 7\n"


def test_each_message_goes_under_the_field_it_names(tmp_path):
    _, problems = form.validate(
        _values(
            learning_rate="-1",
            cutoff_len="many",
            precision="bf16",
            extra="fp16: true\n",
            dataset_dir=str(tmp_path),
        )
    )
    assert problems["learning_rate"] == ["learning_rate=-1: Input should be greater than 0"]
    assert problems["cutoff_len"][0].startswith(
        "cutoff_len='many': Input should be a valid integer"
    )
    assert "" not in problems
    _, problems = form.validate(_values(precision="bf16", extra="fp16: true\n"))
    assert problems["precision"] == ["bf16 and fp16 are both true; choose one"]


def test_unknown_and_bad_extra_keys_are_reported_in_the_yaml_box():
    _, problems = form.validate(_values(dataset=["qa"], extra="lora_rnak: 4\n"))
    assert problems == {"extra": ["unknown key 'lora_rnak'; did you mean 'lora_rank'?"]}
    _, problems = form.validate(_values(extra="seed: [1\n"))
    assert list(problems) == ["extra"] and problems["extra"][0].startswith("extra: line ")


def test_dataset_folder_without_dataset_info_is_named(tmp_path):
    _, problems = form.validate(_values(dataset_dir=str(tmp_path), dataset=["qa"]))
    assert problems["dataset_dir"] == [
        (
            f"{tmp_path}/dataset_info.json: not found; create it to register datasets (or set "
            f"dataset_dir to the folder that holds it)"
        )
    ]


def test_a_valid_form_has_no_problems(tmp_path):
    (tmp_path / "qa.json").write_text(json.dumps([{"instruction": "Hi", "output": "Hello"}]))
    (tmp_path / "dataset_info.json").write_text(json.dumps({"qa": {"file_name": "qa.json"}}))
    config, problems = form.validate(_values(dataset_dir=str(tmp_path), dataset=["qa"]))
    assert problems == {} and config["dataset"] == ["qa"]
    _, problems = form.validate(_values(dataset_dir=str(tmp_path), dataset=["qa2"]))
    assert problems["dataset"][0].endswith("no dataset named 'qa2'; did you mean 'qa'?")


def test_messages_are_placed_by_their_key_not_by_the_words_in_them():
    placed = form.problems_by_field(
        [
            Problem("dataset", "dataset is required (names from data/dataset_info.json)"),
            Problem("fp16", "fp16 needs cutoff_len below 10"),
            Problem("lora_rnak", "unknown key 'lora_rnak'; did you mean 'lora_rank'?"),
            Problem(None, "learning_rate and friends"),
        ]
    )
    assert placed == {
        "dataset": ["dataset is required (names from data/dataset_info.json)"],
        "precision": ["fp16 needs cutoff_len below 10"],
        "extra": ["unknown key 'lora_rnak'; did you mean 'lora_rank'?"],
        "": ["learning_rate and friends"],
    }
    assert form.error_by_field(OutputError("output_dir 'x' is not empty")) == {
        "": ["output_dir 'x' is not empty"]
    }


def test_the_machine_checks_of_train_are_shown_too(tmp_path):
    missing = tmp_path / "ds.json"
    _, problems = form.validate(_values(dataset=["qa"], extra=f"deepspeed: {missing}\n"))
    assert (
        f"deepspeed='{missing}': no such file; ready-made ones are in examples/deepspeed/"
        in (problems["extra"])
    )
