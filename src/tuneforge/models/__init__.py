"""Models: where the weights come from, how they load, in which precision, and what trains."""

from tuneforge.models.adapters import apply_finetuning, prepare_for_training, trainable_summary
from tuneforge.models.aliases import ALIASES, resolve_model_path
from tuneforge.models.default import ensure_default_model
from tuneforge.models.load import REWARD_LABEL, load_adapter, load_model, load_tokenizer
from tuneforge.models.precision import (
    Hardware,
    Precision,
    choose_precision,
    detect_hardware,
    inference_dtype,
)
from tuneforge.models.quantization import is_quantized, refuse_quantized_merge

__all__ = [
    "ALIASES",
    "REWARD_LABEL",
    "Hardware",
    "Precision",
    "apply_finetuning",
    "choose_precision",
    "detect_hardware",
    "ensure_default_model",
    "inference_dtype",
    "is_quantized",
    "load_adapter",
    "load_model",
    "load_tokenizer",
    "prepare_for_training",
    "refuse_quantized_merge",
    "resolve_model_path",
    "trainable_summary",
]
