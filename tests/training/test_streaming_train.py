"""A streamed run trains its max_steps, and one resumed from a checkpoint logs the losses of
the run that was never stopped, the stream's shuffle and its restart included."""

from __future__ import annotations

import json
import shutil

import pytest

import tuneforge
from tuneforge.layout import MARKER


def losses(out) -> dict[int, float]:
    entries = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    return {e["step"]: e["loss"] for e in entries if "loss" in e}


@pytest.fixture()
def streamed(base_config):
    # 32 samples packed into rows of 64 tokens, 4 rows a batch: a pass is a few steps, so 12
    # steps start the stream again (reshuffled) more than once.
    base_config.update(
        streaming=True, buffer_size=8, max_steps=12, save_steps=5, lora_dropout=0.0, packing=True
    )
    return base_config


def test_a_streamed_run_trains_max_steps_and_resumes_as_if_never_stopped(streamed, tmp_path):
    reference = tuneforge.train({**streamed, "output_dir": str(tmp_path / "reference")})
    assert (reference.step, reference.max_steps) == (12, 12)
    expected = losses(reference.output_dir)
    assert sorted(expected) == list(range(1, 13))

    # The run as it was at step 5: its later checkpoints and its log gone.
    stopped = tmp_path / "stopped"
    shutil.copytree(reference.output_dir, stopped)
    for later in ("checkpoint-10", "checkpoint-12"):
        shutil.rmtree(stopped / later)
    (stopped / "trainer_log.jsonl").unlink()
    assert (stopped / "checkpoint-5" / MARKER).is_file()

    resumed = tuneforge.train(
        {**streamed, "output_dir": str(stopped), "resume_from_checkpoint": True}
    )
    assert resumed.step == 12
    got = losses(stopped)
    assert sorted(got) == list(range(6, 13))
    assert got == pytest.approx({step: expected[step] for step in got}, abs=1e-4)
