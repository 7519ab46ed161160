"""Using a model: the one generation path (chat), the OpenAI-compatible API server.

The names below load on first use, so ``import tuneforge`` stays fast and the public function
`tuneforge.serve` can share this package's name.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ChatModel": "tuneforge.serve.chat",
    "chat_config": "tuneforge.serve.chat",
    "generation_settings": "tuneforge.serve.chat",
    "load_chat_model": "tuneforge.serve.chat",
    "Row": "tuneforge.serve.decoding",
}

__all__ = ["ChatModel", "Row", "chat_config", "generation_settings", "load_chat_model"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tuneforge.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
