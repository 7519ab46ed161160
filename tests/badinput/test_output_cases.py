"""Bad output_dir, checkpoint and resume inputs: refused before any model loads, one line,
exit code 5 (OutputError), not one file of the project touched (its own files least of all)."""

from __future__ import annotations

import json

import pytest

OUTPUT_ERROR = 5

CASES = {
    "output_dir is the current folder": (
        {"output_dir": ".", "overwrite_output_dir": True},
        ["output_dir '.' is the current folder"],
    ),
    "output_dir is the dataset folder": (
        {"output_dir": "data", "overwrite_output_dir": True},
        ["output_dir 'data' holds the dataset folder 'data'"],
    ),
    "output_dir under a regular file": (
        {"output_dir": "run.yaml/out"},
        ["output_dir 'run.yaml/out' cannot be created", "is a file"],
    ),
    "output_dir under /proc": ({"output_dir": "/proc/tuneforge/out"}, ["cannot be created"]),
    "output_dir is a file": ({"output_dir": "run.yaml"}, ["'run.yaml' is a file, not a folder"]),
    "a non-empty folder that is not a run": (
        {"output_dir": "docs", "overwrite_output_dir": True},
        ["output_dir 'docs' is not empty and holds no tuneforge run (notes.md)"],
    ),
    "resume with no checkpoint": (
        {"output_dir": "saves/new", "resume_from_checkpoint": True},
        ["no complete checkpoint in 'saves/new'"],
    ),
    "resume from a missing folder": (
        {"resume_from_checkpoint": "saves/nothing"},
        ["'saves/nothing' is not a folder"],
    ),
    "resume from a folder that is no checkpoint": (
        {"resume_from_checkpoint": "data"},
        ["'data' is not a complete tuneforge checkpoint"],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_bad_output_dir(project, case):
    keys, names = CASES[case]
    project.write("docs/notes.md", "the user's own notes")
    project.write_config(**keys)
    assert project.rejects(["train", "run.yaml"], OUTPUT_ERROR, *names)


def finished_run(project, *extra: str) -> None:
    """What a finished run leaves (its config, log and adapter), plus `extra` user files."""
    for name in ("tuneforge_config.yaml", "trainer_log.jsonl", "adapter_config.json", *extra):
        project.write(f"saves/run/{name}", "{}")


def test_overwrite_of_a_run_that_holds_the_users_files(project):
    finished_run(project, "notes.md")
    project.write_config(overwrite_output_dir=True)
    assert project.rejects(
        ["train", "run.yaml"], OUTPUT_ERROR, "holds files that are not a run's (notes.md)"
    )


def test_a_finished_run_without_overwrite(project):
    finished_run(project)
    assert project.rejects(["train", "run.yaml"], OUTPUT_ERROR, "already holds a run")


def test_a_checkpoint_with_an_unreadable_marker(model_project):
    finished_run(model_project)
    model_project.write("saves/run/checkpoint-2/tuneforge_complete.json", "{not json")
    model_project.write_config(resume_from_checkpoint=True)
    assert model_project.rejects(
        ["train", "run.yaml"], OUTPUT_ERROR, "tuneforge_complete.json' cannot be read"
    )


def test_resume_from_a_checkpoint_of_other_data(model_project):
    finished_run(model_project)
    marker = {"step": 2, "data": "6:0000000000000000", "processes": 1}
    model_project.write("saves/run/checkpoint-2/tuneforge_complete.json", json.dumps(marker))
    model_project.write_config(resume_from_checkpoint=True)
    assert model_project.rejects(["train", "run.yaml"], OUTPUT_ERROR, "was trained on other data")
