"""Bad command lines for the commands around training: eval, data, export, chat, report;
and a few cases run as a real process, where every line the user sees is checked."""

from __future__ import annotations

import pytest


def test_eval_without_test_data(project):
    project.rejects(["eval", "run.yaml", "--out", "scores"], 2, "no test data", "eval_dataset")


def test_eval_with_an_adapter_that_is_not_there(project):
    project.rejects(
        ["eval", "run.yaml", "--adapter", "saves/nowhere", "val_size=0.5"],
        4,
        "adapter 'saves/nowhere': no such folder",
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["chat", "--adapter", "saves/nowhere", "--query", "hi"],
        ["export", "--adapter", "saves/nowhere", "--out", "merged"],
    ],
    ids=lambda argv: argv[0],
)
def test_model_commands_with_an_adapter_that_is_not_there(project, argv):
    project.rejects(argv, 4, "adapter 'saves/nowhere': no such folder")


def test_data_clean_without_out_fails_before_the_tokenizer_loads(project):
    project.rejects(
        ["data", "clean", "run.yaml", "model_name_or_path=nowhere"], 1, "--out is required"
    )


def test_report_on_a_folder_that_is_not_there(project):
    project.rejects(["report", "saves/nowhere"], 5, "saves/nowhere: no such folder")


def test_a_name_with_a_line_break_stays_on_one_line(model_project):
    model_project.register("demo.jsonl", name="de\nmo")
    model_project.write_config(dataset="de\nmo")
    line = model_project.rejects(["train", "run.yaml"], 3, "data/dataset_info.json")
    assert line.endswith("dataset 'de\\nmo': must be an object, not str")


def test_as_a_process_a_bad_override_is_one_line(project):
    project.rejects_as_process(
        ["train", "run.yaml", "--force", "lora_target=[q_proj"], 2, "override 'lora_target=[q_proj'"
    )


def test_as_a_process_an_unparsable_csv_is_one_line(model_project):
    """`datasets` logs the file it cannot parse too; that line must not reach the user."""
    model_project.register({"file_name": "demo.csv"})
    model_project.write("data/demo.csv", 'instruction,output\n"q,a\n')
    model_project.rejects_as_process(["train", "run.yaml"], 3, "data/demo.csv: cannot read")
