"""Inference: the one generation path (chat, evaluation, export checks and the API server
use it) and the rows it decodes."""

from tuneforge.infer.chat import ChatModel, chat_config, generation_settings, load_chat_model
from tuneforge.infer.decoding import Row

__all__ = ["ChatModel", "Row", "chat_config", "generation_settings", "load_chat_model"]
