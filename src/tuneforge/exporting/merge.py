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

from tuneforge.config.load import replace, save_config
from tuneforge.infer.chat import ChatModel, load_chat_model
from tuneforge.infer.resolve import ResolvedModel
from tuneforge.layout import CONFIG_NAME
from tuneforge.models import resolve_model_path

logger = logging.getLogger(__name__)


def load_unmerged(model: ResolvedModel, device: str = "cpu") -> ChatModel:
    """Base model plus adapter, in float32, as chat would load it, on the CPU or (`device`
    "auto") on a CUDA GPU when this machine has one.

    A QLoRA adapter is merged into the unquantised base: merging into 4/8-bit weights would
    round the result back to 4/8 bits.
    """
    bits = model.config.model.quantization_bit
    if bits:
        logger.info(
            "the adapter was trained on %d-bit weights; merging it into the unquantised base", bits
        )
    chat = load_chat_model(model.with_settings(infer_dtype="float32", quantization_bit=None))
    if device == "auto":
        if torch.cuda.is_available():
            logger.info("export_device auto: merging on %s", torch.cuda.get_device_name())
            chat.model.to("cuda")
        else:
            logger.info("export_device auto: no CUDA GPU here; merging on the CPU")
    return chat


def merge(model: Any) -> Any:
    """Fold the LoRA weights into the base weights (a model without adapter is returned as is)."""
    from peft import PeftModel

    from tuneforge.models import refuse_quantized_merge

    if isinstance(model, PeftModel):
        refuse_quantized_merge(model.get_base_model())
        logger.info("merging the adapter into the base weights")
        return model.merge_and_unload()
    return model


def save_merged(
    model: Any,
    tokenizer: Any,
    source: ResolvedModel,
    folder: Path,
    *,
    max_shard_size: int | str | None = None,
    legacy_format: bool = False,
) -> None:
    """Weights (safetensors, or `legacy_format` pytorch_model*.bin; in shards of at most
    `max_shard_size` bytes, or transformers' default), tokenizer with its chat template, and
    the run's config as it was trained (its model_name_or_path still the base: chat loads the
    folder's own weights, and eval compares them with that base; no adapter: it is merged)."""
    dtype = stored_dtype(source)
    shards = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    model.to(dtype).save_pretrained(folder, **shards)
    model.to(torch.float32)
    if legacy_format:
        to_pytorch_bin(folder)
    tokenizer.save_pretrained(folder)
    config = source.config
    if config.model.adapter_name_or_path is not None:
        config = replace(config, adapter_name_or_path=None)
    save_config(config, folder / CONFIG_NAME)
    logger.info("saved the merged model (%s) to %s", str(dtype).removeprefix("torch."), folder)


def to_pytorch_bin(folder: Path) -> None:
    """Rewrite the safetensors weights of a saved folder as pytorch_model*.bin files (and
    their index), the format older loaders read; transformers 5 saves safetensors only."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("model*.safetensors"))
    names = {
        file.name: "pytorch_model" + file.name.removeprefix("model").replace(".safetensors", ".bin")
        for file in files
    }
    for file in files:
        torch.save(load_file(file), folder / names[file.name])
        file.unlink()
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        content = json.loads(index.read_text(encoding="utf-8"))
        content["weight_map"] = {key: names[name] for key, name in content["weight_map"].items()}
        (folder / "pytorch_model.bin.index.json").write_text(
            json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        index.unlink()


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
