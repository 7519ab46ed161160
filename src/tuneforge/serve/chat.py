"""The one generation path: the CLI chat, the demo, evaluation and the API server use it.

A trained output folder carries its resolved config and a tokenizer whose chat template is
the one used in training, so loading it here renders prompts exactly as they were trained.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tuneforge.config.load import load_config
from tuneforge.config.schema import GenerationArgs, RunConfig
from tuneforge.data import Template, get_template
from tuneforge.models import inference_dtype, load_adapter, load_model, load_tokenizer
from tuneforge.train.checkpoint import CONFIG_NAME

logger = logging.getLogger(__name__)

Message = dict[str, str]


@dataclass
class ChatModel:
    model: Any
    tokenizer: Any
    template: Template

    def stream(self, messages: list[Message], gen: GenerationArgs | None = None) -> Iterator[str]:
        """Yield the reply piece by piece as it is generated."""
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs = self._generate_kwargs(messages, gen or GenerationArgs())
        worker = threading.Thread(target=self.model.generate, kwargs={**kwargs, "streamer": streamer})
        worker.start()
        yield from streamer
        worker.join()

    def reply(self, messages: list[Message], gen: GenerationArgs | None = None) -> str:
        """The whole reply at once."""
        kwargs = self._generate_kwargs(messages, gen or GenerationArgs())
        prompt_len = kwargs["input_ids"].shape[1]
        with torch.inference_mode():
            output = self.model.generate(**kwargs)
        return self.tokenizer.decode(output[0, prompt_len:], skip_special_tokens=True).strip()

    def _generate_kwargs(self, messages: list[Message], gen: GenerationArgs) -> dict[str, Any]:
        ids = torch.tensor([self.template.encode_prompt(messages)], device=self.model.device)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids),
                "eos_token_id": list(self.template.stop_token_ids),
                "pad_token_id": self.tokenizer.pad_token_id, **gen.to_kwargs()}


def chat_config(adapter: str | None = None, config: RunConfig | None = None) -> RunConfig:
    """The config a chat needs: a training output's saved config unless one is given.

    `adapter` may be a LoRA output folder or the folder of a full/freeze run.
    """
    if config is not None:
        return config
    if adapter is not None:
        saved = Path(adapter) / CONFIG_NAME
        if saved.is_file():
            cfg = load_config(saved)
            if (Path(adapter) / "adapter_config.json").is_file():
                cfg.model.adapter_name_or_path = adapter
            else:  # a full or freeze run saved a whole model
                cfg.model.model_name_or_path, cfg.model.adapter_name_or_path = adapter, None
            return cfg
        return load_config({"adapter_name_or_path": adapter, "do_train": False})
    return load_config({"do_train": False})


def load_chat_model(cfg: RunConfig) -> ChatModel:
    """Load the base model (and the adapter in ``adapter_name_or_path``) for generation."""
    adapter = cfg.model.adapter_name_or_path
    tokenizer = load_tokenizer(cfg.model)  # an adapter's own tokenizer carries its chat template
    model = load_model(cfg.model, dtype=inference_dtype(cfg.model), for_training=False)
    if adapter:
        model = load_adapter(model, adapter, trainable=False)
    model.eval()
    template = get_template(cfg.data.template, tokenizer, cfg.data.default_system)
    return ChatModel(model=model, tokenizer=tokenizer, template=template)
