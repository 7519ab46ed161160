"""The server's one training job: written config, one job at a time, SIGINT on Stop, the
console tail; a stand-in for ``python`` keeps these tests from training anything."""

from __future__ import annotations

import time

import pytest
import yaml

from tuneforge.errors import ConfigError, OutputError
from tuneforge.layout import MARKER
from tuneforge.webui.runner import CONFIG_FILE, JobRunning, TrainingRunner

# Prints its arguments, then waits; SIGINT makes it say so and exit 0, as training does.
FAKE_PYTHON = """#!/bin/sh
trap 'echo "interrupted: checkpoint saved"; exit 0' INT
echo "args: $*"
printf 'train: 1/9\\rtrain: 2/9\\rtrain: 3/9\\n'
i=0
while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
"""


@pytest.fixture()
def runner(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    runner = TrainingRunner(python=str(fake), jobs_dir=tmp_path / "jobs")
    yield runner
    if runner.job is not None and runner.job.running:
        runner.job.process.kill()
        runner.job.process.wait()


def _config(tmp_path, **changes):
    return {"dataset": "qa", "output_dir": str(tmp_path / "run"), "learning_rate": 1e-3, **changes}


def _wait_for(condition, timeout=20.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_start_writes_the_config_and_runs_the_train_command(runner, tmp_path):
    job = runner.start(_config(tmp_path))
    assert yaml.safe_load(job.config_path.read_text()) == _config(tmp_path)
    assert job.config_path == runner.config_path(tmp_path / "run")
    assert job.config_path.name == CONFIG_FILE and (tmp_path / "jobs") in job.config_path.parents
    _wait_for(lambda: len(job.console_lines()) >= 2)
    lines = job.console_lines()
    assert lines[0] == f"args: -m tuneforge.cli train {job.config_path}"
    assert lines[1] == "train: 3/9"  # a progress bar's redraws count as one line
    assert job.state == "running" and runner.output_dirs == [tmp_path / "run"]


def test_a_second_start_while_one_runs_is_refused(runner, tmp_path):
    first = runner.start(_config(tmp_path))
    with pytest.raises(
        JobRunning,
        match=r"a training job is already running in .*run "
        rf"\(pid {first.process.pid}\)",
    ):
        runner.start(_config(tmp_path, output_dir=str(tmp_path / "other")))
    assert runner.job is first and not (tmp_path / "other").exists()


def test_stop_sends_one_sigint_and_the_job_ends_stopped(runner, tmp_path):
    assert runner.stop() is False
    job = runner.start(_config(tmp_path))
    _wait_for(lambda: job.console_lines())
    assert runner.stop() is True and runner.stop() is True  # the second one sends nothing
    job.process.wait(timeout=20)
    assert job.state == "stopped" and job.process.returncode == 0
    assert job.console_lines()[-1] == "interrupted: checkpoint saved"


def test_resume_runs_the_same_config_from_the_last_checkpoint(runner, tmp_path):
    with pytest.raises(OutputError, match="no complete checkpoint"):
        runner.start(_config(tmp_path), resume=True)
    (tmp_path / "run" / "checkpoint-2").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-2" / MARKER).write_text('{"step": 2}')
    job = runner.start(_config(tmp_path), resume=True)
    assert yaml.safe_load(job.config_path.read_text()) == {
        **_config(tmp_path),
        "resume_from_checkpoint": True,
    }
    assert job.resumed


def test_an_invalid_config_starts_nothing(runner, tmp_path):
    with pytest.raises(ConfigError, match="learning_rate=-1"):
        runner.start(_config(tmp_path, learning_rate=-1))
    assert runner.job is None and not (tmp_path / "run").exists()


def test_job_files_live_outside_the_output_dir_so_overwrite_cannot_delete_them(runner, tmp_path):
    """The run refuses a folder with files it did not write, and overwrite_output_dir deletes
    a run's own files: the page's YAML must not be among either."""
    from tuneforge.config import load_config
    from tuneforge.training.checkpoint import check_output_dir, clear_output_dir

    job = runner.start(_config(tmp_path, overwrite_output_dir=True))
    out = tmp_path / "run"
    assert out not in job.config_path.parents and not out.exists()
    out.mkdir()
    (out / "tuneforge_config.yaml").write_text("stage: sft\n")  # a previous run's files
    cfg = load_config(_config(tmp_path, overwrite_output_dir=True))
    check_output_dir(cfg.train)
    clear_output_dir(cfg.train)
    assert job.config_path.is_file() and not any(out.iterdir())
