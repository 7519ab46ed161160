"""Inference: what a trained folder holds (`resolve_model`), the one generation path (chat,
evaluation, export checks and the API server use it) and the rows it decodes."""

from tuneforge.infer.chat import ChatModel, generation_settings, load_chat_model
from tuneforge.infer.decoding import Row
from tuneforge.infer.resolve import ResolvedModel, resolve_model

__all__ = [
    "ChatModel",
    "ResolvedModel",
    "Row",
    "generation_settings",
    "load_chat_model",
    "resolve_model",
]
