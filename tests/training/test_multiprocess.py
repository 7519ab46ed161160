"""Data-parallel training in 2 CPU processes (gloo) matches one process with the same batch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import tuneforge
from tuneforge import cli
from tuneforge.config import TrainArgs
from tuneforge.errors import ConfigError, DataError, OutputError
from tuneforge.training.distributed import batch_advice, device_slots
from tuneforge.training.launch import resolve_launch

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LOSS_RTOL = 1e-5
WEIGHT_ATOL = 1e-5


def logged_losses(out) -> list[float]:
    entries = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    return [e["loss"] for e in entries if "loss" in e]


def max_difference(a, b) -> float:
    first = load_file(a / "adapter_model.safetensors")
    second = load_file(b / "adapter_model.safetensors")
    assert first.keys() == second.keys()
    return max((first[k] - second[k]).abs().max().item() for k in first)


two_cpu_processes = pytest.mark.skipif(
    device_slots()[0] < 2 or torch.cuda.is_available(), reason="needs 2 CPU cores and no GPU"
)


def train_in_two_processes(config_dict: dict, tmp_path, *extra: str) -> int:
    """``tuneforge train ... --nproc 2`` with batch 2 per process; the exit status."""
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({**config_dict, "per_device_train_batch_size": 2}))
    return cli.main(["train", str(config), *extra, "--nproc", "2"])


@pytest.fixture()
def common(base_config) -> dict:
    # fp32 (no bf16 autocast) so all runs do the same arithmetic up to summation order
    return {**base_config, "bf16": False, "learning_rate": 1e-3, "max_steps": 4, "save_steps": 2}


FSDP = {"fsdp": True, "fsdp_config": str(EXAMPLES / "fsdp" / "fsdp_full_shard.yaml")}


@two_cpu_processes
@pytest.mark.parametrize(
    "engine",
    [
        pytest.param({}, id="ddp"),
        pytest.param(FSDP, id="fsdp", marks=pytest.mark.slow),
    ],
)
def test_two_processes_match_one_process_with_the_same_batch(common, tmp_path, capfd, engine):
    single = tuneforge.train(
        {**common, "output_dir": str(tmp_path / "single"), "per_device_train_batch_size": 4}
    ).output_dir
    ddp = tmp_path / "ddp"
    assert train_in_two_processes({**common, **engine, "output_dir": str(ddp)}, tmp_path) == 0
    assert capfd.readouterr().out.count("Result in") == 1  # only rank 0 prints
    assert len(logged_losses(ddp)) == 4  # one JSONL writer
    assert logged_losses(ddp) == pytest.approx(logged_losses(single), rel=LOSS_RTOL)
    assert max_difference(ddp, single) < WEIGHT_ATOL
    marker = json.loads((ddp / "checkpoint-2" / "tuneforge_complete.json").read_text())
    assert marker["processes"] == 2


@pytest.mark.slow  # two multi-process launches
@two_cpu_processes
def test_resume_with_the_same_number_of_processes(common, tmp_path):
    ddp, resumed = tmp_path / "ddp", tmp_path / "resumed"
    assert train_in_two_processes({**common, "output_dir": str(ddp)}, tmp_path) == 0
    shutil.copytree(ddp / "checkpoint-2", resumed / "checkpoint-2")  # as if stopped at step 2
    result = tuneforge.train(
        {
            **common,
            "per_device_train_batch_size": 2,
            "output_dir": str(resumed),
            "resume_from_checkpoint": True,
        },
        nproc=2,
    )  # the library launches the processes too
    assert result.completed and result.metrics["train_loss"] > 0
    assert logged_losses(resumed) == pytest.approx(logged_losses(ddp)[2:], rel=LOSS_RTOL)
    assert max_difference(resumed, ddp) < WEIGHT_ATOL

    with pytest.raises(
        OutputError,
        match="written by a run of 2 process\\(es\\) and this run has 1.*Resume with --nproc 2",
    ):
        tuneforge.train(
            {**common, "output_dir": str(resumed), "resume_from_checkpoint": True, "max_steps": 6}
        )


@pytest.mark.slow  # a multi-process launch
@two_cpu_processes
def test_a_failing_process_is_one_line_not_a_launcher_report(common, tmp_path, capfd):
    bad = {**common, "dataset": "nope", "output_dir": str(tmp_path / "x")}
    assert train_in_two_processes(bad, tmp_path) == DataError.exit_code  # the process's own
    err = capfd.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("tuneforge: error:")]
    assert line.startswith(
        f"tuneforge: error: {common['dataset_dir']}/dataset_info.json: "
        f"no dataset named 'nope'; available: "
    )
    assert "Traceback" not in err and "ChildFailedError" not in err


def test_nproc_beyond_the_machine_is_one_line(base_config, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(base_config))
    slots, described = device_slots()
    assert cli.main(["train", str(config), "--nproc", str(slots + 1)]) == ConfigError.exit_code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f"tuneforge: error: --nproc {slots + 1}: this machine has {described}; "
        f"use --nproc {slots} or fewer"
    )
    with pytest.raises(ConfigError, match="--nproc 0: give a number of processes of 1 or more"):
        resolve_launch(nproc=0, environ={})


def test_nproc_inside_a_launcher_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(
        ConfigError, match="already started by a launcher with 2 processes; drop --nproc"
    ):
        resolve_launch(nproc=2)


def test_batch_advice_counts_the_processes():
    args = TrainArgs(
        per_device_train_batch_size=4, gradient_accumulation_steps=2, learning_rate=2e-4
    )
    assert batch_advice(args, 1) == (
        "Effective batch: 4 per process x 2 accumulation x 1 process = 8 rows per optimizer step"
    )
    advice = batch_advice(args, 4)
    assert "x 4 processes = 32 rows per optimizer step" in advice
    assert "learning_rate=0.0002" in advice
    assert "by 4 (linear" in advice and "2.00 (square" in advice
