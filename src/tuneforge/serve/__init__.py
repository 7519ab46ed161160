"""Using a model: the one generation path (chat) shared by the CLI, evaluation and the API."""

from tuneforge.serve.chat import ChatModel, chat_config, load_chat_model

__all__ = ["ChatModel", "chat_config", "load_chat_model"]
