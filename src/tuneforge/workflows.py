"""The library's entry points: what ``tuneforge <command>``, the WebUI and Python code call.

Each function takes a config (a `RunConfig`, a YAML path or a flat dict) or a trained folder
and runs one job through the packages below. This module sits above all of them, so it is the
one place where a training run is put together: output folder check, memory plan, the
monitoring callbacks and the stage. Heavy packages load inside the functions, so importing
``tuneforge`` stays fast.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from tuneforge.config import RunConfig, check_environment, load_config
from tuneforge.errors import INTERRUPTED_EXIT, UserError
from tuneforge.layout import RESULTS_NAME, complete_checkpoints

if TYPE_CHECKING:
    from tuneforge.eval.evaluate import EvalReport
    from tuneforge.exporting.pipeline import ExportResult
    from tuneforge.infer.chat import ChatModel
    from tuneforge.infer.resolve import ResolvedModel
    from tuneforge.planning.report import Plan
    from tuneforge.planning.sweep import SweepResult
    from tuneforge.training.launch import Launch
    from tuneforge.training.stages import TrainResult

ConfigLike = RunConfig | str | Path | Mapping[str, Any]
# A model to load: resolved already, a config's model, a trained or model folder, None (default).
ModelLike: TypeAlias = "ResolvedModel | RunConfig | str | Path | None"


class ProcessesFailed(UserError):
    """The training processes of a multi-process run failed; each has printed its own error."""

    def __init__(self, exit_code: int) -> None:
        super().__init__()
        self.exit_code = exit_code


def _config(config: ConfigLike, overrides: Sequence[str] = ()) -> RunConfig:
    return config if isinstance(config, RunConfig) else load_config(config, overrides)


def train(
    config: ConfigLike,
    *,
    force: bool = False,
    nproc: int | None = None,
    nnodes: int | None = None,
    node_rank: int | None = None,
    master_addr: str | None = None,
    master_port: int | None = None,
) -> TrainResult:
    """Fine-tune as the config says; returns where the result is, its metrics and whether it
    completed (an interrupted run says which checkpoint continues it).

    The output folder is checked and the memory estimated before any weights load: a run
    that would not fit is refused unless `force`. `nproc` > 1 runs that many data-parallel
    processes on this machine (torchrun); `nnodes` > 1 runs on that many machines, each
    calling this with its own `node_rank` and machine 0's `master_addr`. Arguments not
    given are read from LLaMA-Factory's variables (NPROC_PER_NODE, NNODES, NODE_RANK,
    MASTER_ADDR, MASTER_PORT, FORCE_TORCHRUN), as ``tuneforge train`` does."""
    from tuneforge.monitor.callbacks import training_observers
    from tuneforge.planning.budget import log_classifier_budget
    from tuneforge.planning.report import check_memory
    from tuneforge.training import checkpoint
    from tuneforge.training.launch import resolve_launch
    from tuneforge.training.stages import run_stage
    from tuneforge.training.threads import set_cpu_threads

    launch = resolve_launch(
        nproc=nproc,
        nnodes=nnodes,
        node_rank=node_rank,
        master_addr=master_addr,
        master_port=master_port,
    )
    cfg = _config(config)
    if launch.torchrun:
        return _train_processes(cfg, launch, force=force)
    check_environment(cfg)  # before anything is loaded or written
    checkpoint.check_output_dir(cfg.train, cfg.data)
    check_memory(cfg, force=force)
    set_cpu_threads()
    if cfg.finetune.stage == "cls":
        log_classifier_budget(cfg)
    return run_stage(cfg, training_observers)


def _train_processes(cfg: RunConfig, launch: Launch, *, force: bool) -> TrainResult:
    """Run the resolved config in the launch's processes and read back what rank 0 saved
    (on machine 0; another machine returns no metrics unless the folder is shared)."""
    from tuneforge.config.load import save_config
    from tuneforge.training.launch import launch_training
    from tuneforge.training.stages import TrainResult

    folder = Path(tempfile.mkdtemp(prefix="tuneforge-launch-"))
    try:
        path = folder / "config.yaml"
        save_config(cfg, path)
        code = launch_training(cfg, launch, ["train", str(path), *(["--force"] if force else [])])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    out = Path(cfg.train.output_dir)
    complete = complete_checkpoints(out)
    if code == INTERRUPTED_EXIT:
        return TrainResult(
            output_dir=out, completed=False, resume_from=complete[-1] if complete else None
        )
    if code != 0:
        raise ProcessesFailed(code)
    results = out / RESULTS_NAME
    if launch.node_rank != 0 and not results.exists():
        return TrainResult(output_dir=out)
    metrics = json.loads(results.read_text(encoding="utf-8"))
    return TrainResult(output_dir=out, metrics=metrics)


def plan(config: ConfigLike, *, with_data: bool = True) -> Plan:
    """What the run needs, without training: memory per component against the device, the
    changes that would make it fit, hyper-parameter advice and (`with_data`) data statistics.
    ``print(tuneforge.plan("my.yaml").text())``"""
    from tuneforge.planning.report import make_plan

    cfg = _config(config)
    check_environment(cfg)
    return make_plan(cfg, with_data=with_data)


def sweep(
    config: ConfigLike,
    grid: Mapping[str, Sequence[Any]],
    folder: str | Path,
    *,
    max_steps: int | None = None,
    max_tokens: int | None = None,
) -> SweepResult:
    """Short runs over every combination of `grid` (e.g. learning rate x batch size), ranked
    by the validation metric; the same call after an interruption continues the sweep."""
    from tuneforge.planning.sweep import sweep as run_sweep

    cfg = _config(config)
    check_environment(cfg)
    return run_sweep(cfg, grid, folder, train=train, max_steps=max_steps, max_tokens=max_tokens)


def evaluate(
    config: ConfigLike,
    adapter: str | None = None,
    output_dir: str | Path | None = None,
    reward_model: str | None = None,
) -> EvalReport:
    """Score a model on the config's test data; with `adapter`, the tuned model beside its
    base (generation, preference pairs) or beside a TF-IDF baseline (classification);
    `reward_model` (a stage rm run) also scores a preference run's answers."""
    from tuneforge.eval.evaluate import evaluate as run_evaluation

    cfg = _config(config, ["do_train=false"])
    check_environment(cfg)
    return run_evaluation(cfg, adapter, output_dir, reward_model)


def _resolved(model: ModelLike) -> ResolvedModel:
    """What to load: a model already resolved, a config's model, a trained or model folder,
    or None for the default model."""
    from tuneforge.infer.resolve import ResolvedModel, resolve_model

    if isinstance(model, ResolvedModel):
        return model
    if isinstance(model, RunConfig):
        return resolve_model(None, model)
    return resolve_model(model)


def chat(model: ModelLike = None) -> ChatModel:
    """Load a model to talk to: a config, a training output or export folder, or None for the
    default model. ``tuneforge.chat("saves/run1").reply([{"role": "user", "content": "Hi"}])``"""
    from tuneforge.infer.chat import load_chat_model

    return load_chat_model(_resolved(model))


def serve(
    model: ModelLike = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    **settings: Any,
) -> None:
    """Answer OpenAI-style chat requests over HTTP until interrupted; `settings` are the
    fields of `tuneforge.serving.api.ServerSettings` (api_key, max_batch, max_waiting, ...)."""
    from tuneforge.serving.api import ServerSettings, served_name
    from tuneforge.serving.api import serve as run_server

    resolved = _resolved(model)
    settings.setdefault("model_name", served_name(resolved))
    run_server(resolved, ServerSettings(**settings), host=host, port=port)


def export(
    model: ModelLike,
    out: str | Path,
    *,
    fmt: str | None = None,
    quant: str | None = None,
    overwrite: bool = False,
    max_shard_size: int | str | None = None,
    legacy_format: bool = False,
    device: str = "cpu",
) -> ExportResult:
    """Merge a training output into its base model and write a Hugging Face folder (weight
    shards of at most `max_shard_size` bytes; `legacy_format`: .bin instead of safetensors) or
    a GGUF file (``fmt="gguf"``, ``quant`` f32/f16/q8_0, or q5_k_m/q4_k_m with the gguf-quant
    extra), checked against the original.
    `device` "auto" merges on a CUDA GPU when there is one."""
    from tuneforge.exporting.pipeline import export_model

    return export_model(
        _resolved(model),
        out,
        fmt=fmt,
        quant=quant,
        overwrite=overwrite,
        max_shard_size=max_shard_size,
        legacy_format=legacy_format,
        device=device,
    )
