"""Warnings during training: judged on made-up sequences, and acted on in real tiny runs."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from monitor_helpers import read_log, train_run
from safetensors.torch import load_file

from tuneforge.layout import checkpoints
from tuneforge.monitor.alerts import GRAD_SPIKE, NOT_MOVING, OVERFITTING, HealthChecks


def test_grad_norm_spike_is_ten_times_the_running_median():
    checks = HealthChecks()
    quiet = [
        checks.train_log(step, {"loss": 1.0, "grad_norm": 1.0 + step / 100}) for step in range(1, 8)
    ]
    assert quiet == [None] * 7
    assert checks.train_log(8, {"loss": 1.0, "grad_norm": 9.0}) is None  # 9x: not yet
    alert = checks.train_log(9, {"loss": 1.0, "grad_norm": 12.0})
    assert alert.kind == GRAD_SPIKE and alert.step == 9 and "running median" in alert.message


def test_overfitting_needs_validation_rising_three_times_while_training_falls():
    checks = HealthChecks()
    found = []
    for step, (train, val) in enumerate([(2.0, 1.5), (1.5, 1.6), (1.0, 1.7), (0.5, 1.8)], 1):
        checks.train_log(step, {"loss": train})
        found.append(checks.eval_log(step, val))
    assert found[:3] == [None, None, None]
    assert found[3].kind == OVERFITTING and "1.5000 -> 1.8000" in found[3].message

    steady = HealthChecks()
    for step, (train, val) in enumerate([(2.0, 1.5), (2.1, 1.6), (2.2, 1.7), (2.3, 1.8)], 1):
        steady.train_log(step, {"loss": train})
        last = steady.eval_log(step, val)
    assert last is None  # training loss rose too: not over-fitting, just diverging


def test_weights_not_moving_is_judged_only_after_the_learning_rate_is_above_zero():
    checks = HealthChecks()
    checks.train_log(1, {"loss": 1.0, "learning_rate": 0.0})
    assert checks.weight_change(1, 0.0) is None  # warm-up starts at 0
    checks.train_log(2, {"loss": 1.0, "learning_rate": 1e-4})
    assert checks.weight_change(2, 1e-3) is None
    assert checks.weight_change(3, 1e-9).kind == NOT_MOVING


def test_nan_loss_stops_the_run_and_keeps_finite_weights_and_the_last_good_checkpoint(
    run_settings, tmp_path, monkeypatch, caplog
):
    from tuneforge.training import runner

    calls = {"train": 0}

    def nan_at_fourth_step(module, inputs, output):
        if module.training:
            calls["train"] += 1
            if calls["train"] == 4:
                return output * float("nan")
        return output

    prepare = runner.prepare_for_training

    def prepare_with_nan(model, **kwargs):
        model.get_input_embeddings().register_forward_hook(nan_at_fourth_step)
        return prepare(model, **kwargs)

    monkeypatch.setattr(runner, "prepare_for_training", prepare_with_nan)
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        run = train_run(run_settings, tmp_path / "run", val_size=0, max_steps=8, save_steps=2)
    log = read_log(run)
    alerts = [e for e in log if e.get("alert") == "nonfinite_loss"]
    assert len(alerts) == 1 and alerts[0]["step"] == 4
    assert "checkpoint-2" in alerts[0]["message"]
    assert sum("NaN/inf at step 4" in r.getMessage() for r in caplog.records) == 1
    assert math.isnan([e["loss"] for e in log if "loss" in e][-1])
    assert max(e["step"] for e in log) == 4  # stopped: 8 steps were planned
    assert [step for step, _ in checkpoints(run)] == [2]
    assert all(
        torch.isfinite(w).all() for w in load_file(run / "adapter_model.safetensors").values()
    )


def test_weights_that_do_not_move_are_reported_once(run_settings, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        run = train_run(
            run_settings,
            tmp_path / "run",
            val_size=0,
            max_steps=3,
            warmup_steps=0,
            learning_rate=1e-30,
        )
    alerts = [e for e in read_log(run) if e.get("alert") == NOT_MOVING]
    assert [a["step"] for a in alerts] == [1, 2, 3]  # recorded at every weight check
    assert sum("not moving" in r.getMessage() for r in caplog.records) == 1  # printed once


@pytest.mark.parametrize("reporter", ["wandb", "mlflow"])
def test_missing_reporter_package_is_one_config_line(reporter, monkeypatch):
    import importlib.util

    from tuneforge.config import check_environment, load_config
    from tuneforge.errors import ConfigError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == reporter else real(name, *a)
    )
    with pytest.raises(
        ConfigError,
        match=rf"report_to={reporter} needs the {reporter} "
        r"package: pip install 'tuneforge\[monitor\]'",
    ):
        check_environment(load_config({"dataset": "x", "report_to": reporter}))
