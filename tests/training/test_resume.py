"""Exact resume: a run killed with SIGKILL and resumed ends where an uninterrupted one does."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap

import pytest
import yaml

import tuneforge
from tuneforge.errors import OutputError
from tuneforge.layout import MARKER

# Runs the library in a child process that kills itself (SIGKILL: no cleanup, no handlers)
# right after the given optimizer step.
KILLER = textwrap.dedent("""
    import os, signal, sys
    from transformers import TrainerCallback
    import tuneforge
    from tuneforge.training import stages

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == int(sys.argv[2]):
                os.kill(os.getpid(), signal.SIGKILL)

    build = stages.build_trainer
    def build_and_arm(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(Kill())
        return trainer
    stages.build_trainer = build_and_arm
    tuneforge.train(tuneforge.load_config(sys.argv[1]))
""")


def final_loss(out) -> tuple[int, float]:
    entries = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    last = [e for e in entries if "loss" in e][-1]
    return last["step"], last["loss"]


@pytest.fixture()
def resumable(base_config, tmp_path):
    base_config.update(max_steps=12, save_steps=4, lora_dropout=0.0)
    return base_config


def test_sigkill_then_resume_matches_an_uninterrupted_run(resumable, tmp_path):
    reference = tuneforge.train({**resumable, "output_dir": str(tmp_path / "reference")})
    step, loss = final_loss(reference.output_dir)
    assert step == 12

    config = tmp_path / "killed.yaml"
    killed_out = tmp_path / "killed"
    config.write_text(yaml.safe_dump({**resumable, "output_dir": str(killed_out)}))
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, str(config), "6"], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (killed_out / "checkpoint-4" / MARKER).is_file()
    assert not (killed_out / "checkpoint-8").exists()

    resumed = tuneforge.train(
        {**resumable, "output_dir": str(killed_out), "resume_from_checkpoint": True}
    )
    resumed_step, resumed_loss = final_loss(resumed.output_dir)
    assert resumed_step == 12
    assert resumed_loss == pytest.approx(loss, abs=1e-3)
    # Steps 5 and 6 ran twice (before the kill and after the resume); the log holds them once.
    entries = [json.loads(x) for x in (killed_out / "trainer_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in entries if "loss" in e] == list(range(1, 13))


def test_resume_ignores_a_checkpoint_that_was_not_written_completely(resumable, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="tuneforge")
    out = tuneforge.train({**resumable, "max_steps": 8}).output_dir
    (out / "checkpoint-8" / MARKER).unlink()  # as if the process died while saving it
    (out / "checkpoint-8" / "optimizer.pt").unlink(missing_ok=True)
    tuneforge.train({**resumable, "resume_from_checkpoint": True})
    assert "checkpoint-8: it was not written completely" in caplog.text
    assert "Resuming from" in caplog.text and "checkpoint-4: step 4 of 12" in caplog.text


def test_resume_refuses_other_data_and_finished_runs(resumable, data_dir):
    out = tuneforge.train(resumable).output_dir
    with pytest.raises(OutputError, match="nothing left to train"):
        tuneforge.train({**resumable, "resume_from_checkpoint": True})
    with pytest.raises(OutputError, match="trained on other data"):
        tuneforge.train(
            {**resumable, "resume_from_checkpoint": True, "max_steps": 20, "cutoff_len": 16}
        )
    with pytest.raises(OutputError, match="no complete checkpoint"):
        tuneforge.train(
            {**resumable, "resume_from_checkpoint": True, "output_dir": str(out.parent / "empty")}
        )
