"""Where logged values go besides ``trainer_log.jsonl``: TensorBoard, Weights & Biases, MLflow.

Each sink takes the same calls (scalars, histogram, text) through its library's own client, so
every tag reaches every place the user asked for. W&B follows its own environment
(``WANDB_MODE=offline``, ``WANDB_PROJECT``); MLflow writes to ``MLFLOW_TRACKING_URI`` when set,
else to a local SQLite store beside the run (``<output_dir>/../mlflow.db``: MLflow 3 no longer
accepts the old ``mlruns`` folder store).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch

from tuneforge.layout import TB_DIR

logger = logging.getLogger(__name__)


class Sink(Protocol):
    def scalars(self, values: Mapping[str, float], step: int) -> None: ...

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None: ...

    def text(self, tag: str, text: str, step: int) -> None: ...

    def close(self) -> None: ...


class TensorBoardSink:
    """Event files under ``<output_dir>/runs/<time>_<host>``: ``tensorboard --logdir saves/``."""

    def __init__(self, output_dir: Path, config: Mapping[str, object]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        folder = output_dir / TB_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}_{socket.gethostname()}"
        self.writer = SummaryWriter(log_dir=str(folder))
        lines = "\n".join(f"{key}: {value}" for key, value in config.items())
        self.writer.add_text("config", f"```\n{lines}\n```", 0)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self.writer.add_histogram(tag, values, step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.writer.add_text(tag, text, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """One W&B run named after the output folder, its files under ``<output_dir>/wandb``."""

    def __init__(self, output_dir: Path, config: Mapping[str, object]) -> None:
        import wandb

        self.wandb = wandb
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "tuneforge"),
            name=output_dir.name,
            dir=str(output_dir),
            config=dict(config),
            settings=wandb.Settings(quiet=True),
        )

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        self.run.log(dict(values), step=step)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        self.run.log({tag: self.wandb.Histogram(values.tolist(), num_bins=64)}, step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        self.run.log({tag: self.wandb.Html(f"<pre>{text}</pre>")}, step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowSink:
    """One MLflow run in experiment ``tuneforge`` (or ``MLFLOW_EXPERIMENT_NAME``).

    MLflow has no histograms: their norms reach it as scalars; the values go to TensorBoard/W&B.
    """

    def __init__(self, output_dir: Path, config: Mapping[str, object]) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        store = output_dir.resolve().parent
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "tuneforge")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(name, artifact_location=(store / "mlruns").as_uri())
        )
        self.run_id = self.client.create_run(experiment_id, run_name=output_dir.name).info.run_id
        params = [Param(key, str(value)[:6000]) for key, value in config.items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start : start + 100])
        logger.info("MLflow run %s in %s", self.run_id, uri)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, float(value), now, step) for tag, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def histogram(self, tag: str, values: torch.Tensor, step: int) -> None:
        """MLflow stores no histograms; the norms logged beside them stand for them."""

    def text(self, tag: str, text: str, step: int) -> None:
        self.client.set_tag(self.run_id, f"{tag}.step_{step}", text[:5000])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


SINKS: Mapping[str, type[TensorBoardSink | WandbSink | MlflowSink]] = {
    "tensorboard": TensorBoardSink,
    "wandb": WandbSink,
    "mlflow": MlflowSink,
}


def open_sinks(
    report_to: Sequence[str], output_dir: str | Path, config: Mapping[str, object]
) -> list[Sink]:
    """The sinks `report_to` names (``none`` names none), each started for this run."""
    return [SINKS[name](Path(output_dir), config) for name in report_to if name in SINKS]
