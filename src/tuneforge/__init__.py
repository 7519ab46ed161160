"""tuneforge: fine-tune a language model on your own data, on the machine you have.

Public API (the CLI, the API server and the WebUI call these same functions)::

    import tuneforge
    cfg = tuneforge.load_config("examples/identity_lora.yaml", ["num_train_epochs=2"])
    result = tuneforge.train(cfg)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import tuneforge.train  # noqa: F401  (the package first, so the function below wins the name)

__version__ = "0.1.0"

if TYPE_CHECKING:
    from tuneforge.config import RunConfig
    from tuneforge.train.stages import TrainResult


def load_config(source: Any = None, overrides: Any = ()) -> RunConfig:
    """Validate a YAML path or flat dict plus ``key=value`` overrides (see `tuneforge.config`)."""
    from tuneforge.config import load_config as _load

    return _load(source, overrides)


def train(config: RunConfig | str | Path | dict) -> TrainResult:
    """Fine-tune as the config says; returns where the result is and its metrics."""
    from tuneforge.config import RunConfig
    from tuneforge.train.stages import train as _train

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    return _train(cfg)


__all__ = ["__version__", "load_config", "train"]
