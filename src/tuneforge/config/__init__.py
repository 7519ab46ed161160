"""Run configuration: schema (one model per concern) and loading (YAML + overrides)."""

from tuneforge.config.load import load_config, save_config
from tuneforge.config.schema import (
    DataArgs,
    EvalArgs,
    FinetuneArgs,
    GenerationArgs,
    ModelArgs,
    RunConfig,
    TrainArgs,
)

__all__ = [
    "DataArgs",
    "EvalArgs",
    "FinetuneArgs",
    "GenerationArgs",
    "ModelArgs",
    "RunConfig",
    "TrainArgs",
    "load_config",
    "save_config",
]
