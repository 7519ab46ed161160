"""QLoRA: base weights loaded in 4 or 8 bits by bitsandbytes, LoRA adapters trained on top.

The quantised weights never change and are never saved: training writes a LoRA adapter that
belongs to the unquantised base. That is also why an adapter must not be merged into the
4/8-bit weights it was trained on: the merged result would be rounded back to 4/8 bits,
losing most of what the adapter learned, and bitsandbytes weights do not export cleanly.
Merging is done on the base reloaded in 16/32 bits (`refuse_quantized_merge` says so).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import torch

from tuneforge.config.scale import missing_extra
from tuneforge.config.schema import ModelArgs
from tuneforge.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from transformers import BitsAndBytesConfig

logger = logging.getLogger(__name__)

# bitsandbytes' 4-bit block: 64 weights share one absmax scale.
BLOCK_SIZE_4BIT = 64
# With double quantisation the 64-weight scales are stored in 8 bits, in blocks of 256.
DOUBLE_QUANT_BLOCK = 256


def quantized_bytes_per_weight(bits: int, *, double_quantization: bool = True) -> float:
    """Bytes one weight of a quantised linear layer takes, scales included.

    4-bit: half a byte plus an fp32 absmax per 64 weights (0.5625 B), or with double
    quantisation an 8-bit absmax per 64 and an fp32 one per 64 x 256 (~0.516 B).
    8-bit (LLM.int8): one byte plus an fp32 scale per output row (negligible).
    """
    if bits == 8:
        return 1.0
    if bits != 4:
        raise ValueError(f"bits must be 4 or 8, not {bits}")
    scales = (
        1 / BLOCK_SIZE_4BIT + 4 / (BLOCK_SIZE_4BIT * DOUBLE_QUANT_BLOCK)
        if double_quantization
        else 4 / BLOCK_SIZE_4BIT
    )
    return 0.5 + scales


def bnb_config(model_args: ModelArgs, compute_dtype: torch.dtype) -> BitsAndBytesConfig | None:
    """transformers' BitsAndBytesConfig for ``quantization_bit``, or None when unquantised.

    `compute_dtype` is what the 4-bit layers de-quantise to for their matmuls: the run's
    precision (bf16 where the hardware runs it natively, else fp32 on a CPU, fp16 on an old GPU).
    """
    bits = model_args.quantization_bit
    if bits is None:
        return None
    problem = missing_extra(f"quantization_bit={bits}", "bitsandbytes", "qlora")
    if problem:
        raise ConfigError(problem)
    from transformers import BitsAndBytesConfig

    if bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=model_args.quantization_type,
        bnb_4bit_use_double_quant=model_args.double_quantization,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def quantization_kwargs(model_args: ModelArgs, compute_dtype: torch.dtype) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments that load the base quantised; empty when not asked.

    On a GPU each process places its copy on its own device (LOCAL_RANK): bitsandbytes
    weights cannot be moved after loading, so the Trainer cannot do it later.
    """
    config = bnb_config(model_args, compute_dtype)
    if config is None:
        return {}
    kwargs: dict[str, Any] = {"quantization_config": config}
    # bitsandbytes logs a warning on every 8-bit matmul whose input is not fp16 (each layer,
    # each token); that cast is how LLM.int8 works, not a problem worth a line each time.
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    if torch.cuda.is_available():
        kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    described = (
        "8-bit (LLM.int8)"
        if model_args.quantization_bit == 8
        else f"4-bit {model_args.quantization_type}"
        f"{' with double quantisation' if model_args.double_quantization else ''}, "
        f"computing in {str(compute_dtype).removeprefix('torch.')}"
    )
    logger.info("QLoRA: loading the base weights in %s", described)
    return kwargs


def is_quantized(model: torch.nn.Module) -> bool:
    """Whether any layer of `model` (a base model or a PeftModel around one) is 4/8-bit."""
    return any(type(module).__module__.startswith("bitsandbytes") for module in model.modules())


def refuse_quantized_merge(model: torch.nn.Module) -> None:
    """Raise a one-line error when asked to merge an adapter into 4/8-bit weights.

    For export: call it on the model the adapter is about to be merged into.
    """
    if is_quantized(model):
        raise ModelError(
            "cannot merge a LoRA adapter into quantised (4/8-bit) weights: the "
            "result would be rounded back to 4/8 bits; load the base unquantised "
            "(quantization_bit: null, 16/32-bit) and merge the adapter into that"
        )


def prepare_quantized_for_training(model: torch.nn.Module) -> torch.nn.Module:
    """peft's k-bit preparation: frozen base, norms and embeddings in fp32 for stable LoRA.

    Gradient checkpointing is left to `prepare_for_training`, which every run goes through.
    """
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
