"""W&B (offline) and MLflow (local SQLite store) receive the same values as the JSONL log."""

from __future__ import annotations

import pytest
from monitor_helpers import read_log, train_run


@pytest.fixture(scope="module")
def reported_run(run_settings, tmp_path_factory):
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    patch = pytest.MonkeyPatch()
    patch.setenv("WANDB_MODE", "offline")  # no network: the run is written locally only
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    try:
        yield train_run(
            run_settings,
            tmp_path_factory.mktemp("reported") / "run",
            report_to="tensorboard,wandb,mlflow",
            max_steps=4,
        )
    finally:
        patch.undo()


def test_mlflow_run_holds_the_logged_values(reported_run):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{reported_run.parent / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("tuneforge").experiment_id])
    assert run.info.run_name == "run" and run.info.status == "FINISHED"
    assert run.data.params["learning_rate"] == "0.02"
    log = read_log(reported_run)
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, pytest.approx(m.value)) for m in history] == [
        (e["step"], e["loss"]) for e in log if "loss" in e
    ]
    eval_loss = client.get_metric_history(run.info.run_id, "eval/loss")
    assert [m.step for m in eval_loss] == [e["step"] for e in log if "eval_loss" in e]
    assert client.get_metric_history(run.info.run_id, "weights/lora_B_norm")


def test_wandb_offline_run_holds_every_tag(reported_run):
    (folder,) = (reported_run / "wandb").glob("offline-run-*")
    (records,) = folder.glob("run-*.wandb")
    data = records.read_bytes()
    for tag in (
        "train/loss",
        "train/learning_rate",
        "train/grad_norm",
        "train/tokens_per_s",
        "eval/loss",
        "weights/lora_B_norm",
        "weights/lora_A/layer_00",
    ):
        assert tag.encode() in data, tag
    assert b"learning_rate" in data and b"0.02" in data  # the config went along
