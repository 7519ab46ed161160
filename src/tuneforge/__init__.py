"""tuneforge: fine-tune a language model on your own data, on the machine you have.

Public API (the CLI, the API server and the WebUI call these same functions)::

    import tuneforge
    cfg = tuneforge.load_config("examples/identity_lora.yaml", ["num_train_epochs=2"])
    result = tuneforge.train(cfg)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

# The packages first, so the functions below win their names.
import tuneforge.export  # noqa: F401
import tuneforge.plan  # noqa: F401
import tuneforge.serve  # noqa: F401
import tuneforge.train  # noqa: F401

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tuneforge.config import RunConfig
    from tuneforge.eval.evaluate import EvalReport
    from tuneforge.export.pipeline import ExportResult
    from tuneforge.plan.report import Plan
    from tuneforge.serve.chat import ChatModel
    from tuneforge.train.stages import TrainResult


def load_config(source: Any = None, overrides: Any = ()) -> RunConfig:
    """Validate a YAML path or flat dict plus ``key=value`` overrides (see `tuneforge.config`)."""
    from tuneforge.config import load_config as _load

    return _load(source, overrides)


def train(config: RunConfig | str | Path | dict, *, force: bool = False) -> TrainResult:
    """Fine-tune as the config says; returns where the result is and its metrics.

    A run whose memory estimate exceeds what the device has free is refused before any
    weights load, unless `force`."""
    from tuneforge.config import RunConfig
    from tuneforge.train.stages import train as _train

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    return _train(cfg, force=force)


def plan(config: RunConfig | str | Path | dict, *, with_data: bool = True) -> Plan:
    """What the run needs, without training: memory per component against the device, the
    changes that would make it fit, hyper-parameter advice and (`with_data`) data statistics.
    ``print(tuneforge.plan("my.yaml").text())``"""
    from tuneforge.config import RunConfig
    from tuneforge.plan.report import make_plan

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    return make_plan(cfg, with_data=with_data)


def evaluate(config: RunConfig | str | Path | dict, adapter: str | None = None,
             output_dir: str | Path | None = None) -> EvalReport:
    """Score a model on the config's test data; with `adapter`, the tuned model beside its
    base (generation) or beside a TF-IDF baseline (classification)."""
    from tuneforge.config import RunConfig
    from tuneforge.eval.evaluate import evaluate as _evaluate

    cfg = config if isinstance(config, RunConfig) else load_config(config, ["do_train=false"])
    return _evaluate(cfg, adapter, output_dir)


def _model_config(model: RunConfig | str | Path | None) -> RunConfig:
    """A config as given, or the one a training output folder carries (None: the default)."""
    from tuneforge.config import RunConfig
    from tuneforge.serve.chat import chat_config

    return model if isinstance(model, RunConfig) else chat_config(
        None if model is None else str(model))


def chat(model: RunConfig | str | Path | None = None) -> ChatModel:
    """Load a model to talk to: a config, a training output or export folder, or None for the
    default model. ``tuneforge.chat("saves/run1").reply([{"role": "user", "content": "Hi"}])``"""
    from tuneforge.serve.chat import load_chat_model

    return load_chat_model(_model_config(model))


def serve(model: RunConfig | str | Path | None = None, *, host: str = "127.0.0.1",
          port: int = 8000, **settings: Any) -> None:
    """Answer OpenAI-style chat requests over HTTP until interrupted; `settings` are the
    fields of `tuneforge.serve.api.ServerSettings` (api_key, max_batch, max_waiting, ...)."""
    from tuneforge.serve.api import ServerSettings, served_name
    from tuneforge.serve.api import serve as _serve

    cfg = _model_config(model)
    settings.setdefault("model_name", served_name(cfg))
    _serve(cfg, ServerSettings(**settings), host=host, port=port)


def export(model: RunConfig | str | Path, out: str | Path, *, fmt: str | None = None,
           quant: str | None = None, overwrite: bool = False) -> ExportResult:
    """Merge a training output into its base model and write a Hugging Face folder or a GGUF
    file (``fmt="gguf"``, ``quant`` f32/f16/q8_0), checked against the original."""
    from tuneforge.export.pipeline import export_model

    return export_model(_model_config(model), out, fmt=fmt, quant=quant, overwrite=overwrite)


__all__ = ["__version__", "chat", "evaluate", "export", "load_config", "plan", "serve", "train"]
