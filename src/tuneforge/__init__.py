"""tuneforge: fine-tune a language model on your own data, on the machine you have.

Public API (the CLI, the API server and the WebUI call these same functions, defined in
`tuneforge.workflows`)::

    import tuneforge
    cfg = tuneforge.load_config("examples/identity_lora.yaml", ["num_train_epochs=2"])
    result = tuneforge.train(cfg)
"""

from __future__ import annotations

from tuneforge.workflows import chat, evaluate, export, load_config, plan, serve, sweep, train

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "chat",
    "evaluate",
    "export",
    "load_config",
    "plan",
    "serve",
    "sweep",
    "train",
]
