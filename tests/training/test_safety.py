"""Lose nothing: overwrite deletes only a run's own files, a rewritten checkpoint cannot be
half-old, nothing is written before every check passed, an interrupted run says so."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

import tuneforge
from tuneforge import cli
from tuneforge.errors import INTERRUPTED_EXIT, OutputError
from tuneforge.layout import CONFIG_NAME, LOG_NAME, MARKER, RESULTS_NAME


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder` with its mtime and content, to prove nothing changed."""
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def short(base_config):
    base_config.update(max_steps=8, save_steps=4, lora_dropout=0.0)
    return base_config


# --- overwrite_output_dir deletes a run's own files, nothing else -----------------------------


def test_overwrite_refuses_a_run_folder_that_also_holds_the_users_files(short, tmp_path):
    out = tuneforge.train(short).output_dir
    (out / "my_notes.txt").write_text("mine")
    (out / "src").mkdir()
    (out / "src" / "main.py").write_text("print('mine')")
    before = snapshot(out)
    with pytest.raises(
        OutputError, match=r"holds files that are not a run's \(my_notes.txt, src\)"
    ):
        tuneforge.train({**short, "overwrite_output_dir": True})
    assert snapshot(out) == before


def test_overwrite_replaces_the_previous_run(short):
    out = tuneforge.train(short).output_dir
    old_log = (out / LOG_NAME).read_text()
    tuneforge.train({**short, "max_steps": 4, "overwrite_output_dir": True})
    assert not (out / "checkpoint-8").exists() and (out / "checkpoint-4" / MARKER).is_file()
    steps = [json.loads(x)["step"] for x in (out / LOG_NAME).read_text().splitlines()]
    assert max(steps) == 4 and (out / LOG_NAME).read_text() != old_log


@pytest.mark.parametrize("where", ["cwd", "dataset_parent", "not_a_run"])
def test_output_dir_that_would_mix_with_the_users_files_is_refused(
    short, tmp_path, data_dir, monkeypatch, where
):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('mine')")
    monkeypatch.chdir(project if where == "cwd" else Path(short["output_dir"]).anchor)
    out = {"cwd": ".", "dataset_parent": str(data_dir.parent), "not_a_run": str(project)}[where]
    message = {
        "cwd": "is the current folder",
        "dataset_parent": "holds the dataset folder",
        "not_a_run": r"is not empty and holds no tuneforge run \(train.py\)",
    }[where]
    before = snapshot(tmp_path)
    for overwrite in (False, True):
        with pytest.raises(OutputError, match=message):
            tuneforge.train({**short, "output_dir": out, "overwrite_output_dir": overwrite})
    assert snapshot(tmp_path) == before


def test_the_cli_refuses_output_dir_dot_and_deletes_nothing(short, tmp_path, monkeypatch, capsys):
    """The reported case: `output_dir: .` with overwrite inside a project folder."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**short, "output_dir": ".", "overwrite_output_dir": True}))
    before = snapshot(tmp_path)
    assert cli.main(["train", str(config)]) == OutputError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tuneforge: error: output_dir '.' is the current folder; name a new folder for "
        "the run, e.g. output_dir: saves/my-run"
    ]
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("where", ["under_a_file", "under_proc"])
def test_an_output_dir_that_cannot_be_created_is_refused_before_loading(short, tmp_path, where):
    (tmp_path / "a_file").write_text("x")
    out = {"under_a_file": tmp_path / "a_file" / "run", "under_proc": Path("/proc/tuneforge/run")}
    short["model_name_or_path"] = str(tmp_path / "no-such-model")  # loading it would fail
    with pytest.raises(OutputError, match="cannot be created"):
        tuneforge.train({**short, "output_dir": str(out[where])})


# --- checkpoints cannot be half-old; resume reads the marker ----------------------------------

# Resumes a run in a child process that kills itself (SIGKILL) in the middle of writing the
# checkpoint of the given step: after its model and optimizer files, before the rest.
KILL_WHILE_SAVING = textwrap.dedent("""
    import os, signal, sys
    import tuneforge
    from tuneforge.training.trainer import TuneforgeTrainer

    def die(self, output_dir):
        if output_dir.endswith("checkpoint-" + sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)
    TuneforgeTrainer._save_rng_state = die
    tuneforge.train(tuneforge.load_config(sys.argv[1]))
""")


def test_a_checkpoint_killed_while_rewritten_is_not_complete(short, tmp_path, caplog):
    out = tuneforge.train(short).output_dir
    assert (out / "checkpoint-8" / MARKER).is_file()
    config = tmp_path / "again.yaml"
    config.write_text(
        yaml.safe_dump({**short, "resume_from_checkpoint": str(out / "checkpoint-4")})
    )
    proc = subprocess.run(
        [sys.executable, "-c", KILL_WHILE_SAVING, str(config), "8"], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (out / "checkpoint-8" / "adapter_model.safetensors").is_file()  # half rewritten
    assert not (out / "checkpoint-8" / MARKER).exists()

    caplog.set_level("INFO", logger="tuneforge")
    tuneforge.train({**short, "max_steps": 12, "resume_from_checkpoint": True})
    assert "checkpoint-8: it was not written completely" in caplog.text
    assert "checkpoint-4: step 4 of 12" in caplog.text


def test_resume_reads_the_step_from_the_marker_not_the_folder_name(short, tmp_path, caplog):
    out = tuneforge.train(short).output_dir
    backup = tmp_path / "my-backup"
    shutil.copytree(out / "checkpoint-4", backup)
    caplog.set_level("INFO", logger="tuneforge")
    tuneforge.train({**short, "resume_from_checkpoint": str(backup)})
    assert f"Resuming from {backup}: step 4 of 8, 4 steps left" in caplog.text


# --- nothing is written before every check has passed -----------------------------------------


def test_a_refused_resume_leaves_the_finished_run_untouched(short, tmp_path):
    out = tuneforge.train(short).output_dir
    before = snapshot(out)
    with pytest.raises(OutputError, match="trained on other data"):
        tuneforge.train(
            {**short, "resume_from_checkpoint": True, "max_steps": 12, "cutoff_len": 16}
        )
    with pytest.raises(OutputError, match="nothing left to train"):
        tuneforge.train({**short, "resume_from_checkpoint": True})
    assert snapshot(out) == before


def test_resume_with_no_checkpoint_creates_nothing(short, tmp_path):
    out = tmp_path / "never"
    with pytest.raises(OutputError, match="no complete checkpoint"):
        tuneforge.train({**short, "output_dir": str(out), "resume_from_checkpoint": True})
    assert not out.exists()


# --- an interrupted run says so ---------------------------------------------------------------

INTERRUPT_AT = 3


@pytest.fixture()
def ctrl_c(monkeypatch):
    """Ctrl-C (a real SIGINT to this process) at the end of step INTERRUPT_AT."""
    from transformers import TrainerCallback

    from tuneforge.training import stages

    class CtrlC(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == INTERRUPT_AT:
                os.kill(os.getpid(), signal.SIGINT)

    build = stages.build_trainer

    def build_and_arm(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.callback_handler.callbacks.insert(0, CtrlC())
        return trainer

    monkeypatch.setattr(stages, "build_trainer", build_and_arm)


def test_ctrl_c_exits_130_leaves_no_final_model_and_says_how_to_resume(
    short, tmp_path, ctrl_c, capsys
):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(short))
    out = Path(short["output_dir"])
    assert cli.main(["train", str(config)]) == INTERRUPTED_EXIT
    err = capsys.readouterr()
    assert (
        f"tuneforge: interrupted at step 3 of 8; checkpoint saved in {out / 'checkpoint-3'}; "
        f"continue with: tuneforge train {config} resume_from_checkpoint=true"
    ) in err.err
    assert "Result in" not in err.out
    assert (out / "checkpoint-3" / MARKER).is_file() and (out / CONFIG_NAME).is_file()
    assert not (out / "adapter_model.safetensors").exists() and not (out / RESULTS_NAME).exists()

    result = tuneforge.train({**short, "resume_from_checkpoint": True})
    assert result.completed and (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / RESULTS_NAME).read_text())["train_loss"] > 0


def test_the_api_result_of_an_interrupted_run_is_not_completed(short, ctrl_c):
    result = tuneforge.train(short)
    assert not result.completed and result.step == INTERRUPT_AT and result.max_steps == 8
    assert result.resume_from == Path(short["output_dir"]) / "checkpoint-3"
