"""Run configuration: schema (one frozen model per concern), loading (YAML + overrides) and
`replace`, validated from the config alone; `check_environment` checks this machine for it.
Export and inference YAMLs (LLaMA-Factory's merge and chat files) are read by `config.deploy`."""

from tuneforge.config.deploy import read_export_config, read_infer_config
from tuneforge.config.environment import check_environment
from tuneforge.config.load import load_config, replace, save_config
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
    "check_environment",
    "load_config",
    "read_export_config",
    "read_infer_config",
    "replace",
    "save_config",
]
