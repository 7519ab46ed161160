"""The closed sets of names a config may use, where the code that implements them lives in a
higher layer: validating a config must not import templates (transformers) or metrics."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# `template:` names; `tuneforge.data.templates.NAMED_TEMPLATES` holds one for each (tested).
TEMPLATE_NAMES: tuple[str, ...] = ("chatml", "qwen", "llama3", "alpaca", "default", "empty")

# `metric_for_best_model:` values; stage cls computes the last two at every validation.
BEST_MODEL_METRICS: tuple[str, ...] = ("eval_loss", "eval_accuracy", "eval_macro_f1")

# `tool_format:` names (LLaMA-Factory's qwen and llama3, and what they are): how calls are
# written; `tuneforge.data.tools.TOOL_FORMATS` holds each (tested).
TOOL_FORMAT_NAMES: Mapping[str, str] = MappingProxyType(
    {"qwen": "hermes", "hermes": "hermes", "llama3": "json", "json": "json"}
)
