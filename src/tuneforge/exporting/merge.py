"""Merge a LoRA adapter into its base model and save a folder plain transformers loads.

The model is loaded exactly as ``tuneforge chat`` loads it (same config, tokenizer and chat
template), in float32 so the merge adds no rounding of its own, and saved in the dtype the
base checkpoint was stored in. The folder carries the tokenizer with the chat template used in
training and the resolved config, so ``tuneforge chat --adapter FOLDER`` serves it as trained.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from tuneforge.config.load import save_config
from tuneforge.infer.chat import ChatModel, load_chat_model
from tuneforge.infer.resolve import ResolvedModel
from tuneforge.layout import CONFIG_NAME
from tuneforge.models import resolve_model_path

logger = logging.getLogger(__name__)


def load_unmerged(model: ResolvedModel) -> ChatModel:
    """Base model plus adapter, in float32, as chat would load it.

    A QLoRA adapter is merged into the unquantised base: merging into 4/8-bit weights would
    round the result back to 4/8 bits.
    """
    bits = model.config.model.quantization_bit
    if bits:
        logger.info(
            "the adapter was trained on %d-bit weights; merging it into the unquantised base", bits
        )
    return load_chat_model(model.with_settings(infer_dtype="float32", quantization_bit=None))


def merge(model: Any) -> Any:
    """Fold the LoRA weights into the base weights (a model without adapter is returned as is)."""
    from peft import PeftModel

    from tuneforge.models import refuse_quantized_merge

    if isinstance(model, PeftModel):
        refuse_quantized_merge(model.get_base_model())
        logger.info("merging the adapter into the base weights")
        return model.merge_and_unload()
    return model


def save_merged(model: Any, tokenizer: Any, source: ResolvedModel, folder: Path) -> None:
    """Weights (safetensors), tokenizer with its chat template, and the run's config as it
    was trained (its model_name_or_path still the base: chat loads the folder's own weights,
    and eval compares them with that base)."""
    dtype = stored_dtype(source)
    model.to(dtype).save_pretrained(folder, safe_serialization=True)
    model.to(torch.float32)
    tokenizer.save_pretrained(folder)
    save_config(source.config, folder / CONFIG_NAME)
    logger.info("saved the merged model (%s) to %s", str(dtype).removeprefix("torch."), folder)


def stored_dtype(model: ResolvedModel) -> torch.dtype:
    """The dtype of the loaded checkpoint's weights (float32 when config.json does not say)."""
    path = Path(resolve_model_path(model.load_args())) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return torch.float32
    name = config.get("dtype") or config.get("torch_dtype") or "float32"
    dtype = getattr(torch, str(name), None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32
