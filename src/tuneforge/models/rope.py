"""RoPE scaling: let a model attend over more positions than it was pre-trained on.

transformers 5 keeps the rotary settings in ``config.rope_parameters`` (``rope_type``,
``rope_theta``, ``factor`` ...). tuneforge writes them there before the weights load, so the
rotary embedding is built scaled. The factor defaults to ceil(cutoff_len / the model's
original context). The same keys (``rope_scaling``, ``rope_factor``, ``cutoff_len``) are
saved in ``tuneforge_config.yaml`` beside every result, so chat and evaluation rebuild the
same scaling; a full fine-tune's own config.json carries it as well, and loading it again
with the same keys keeps it instead of scaling twice.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from tuneforge.config.schema import ModelArgs
from tuneforge.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from transformers import PretrainedConfig

logger = logging.getLogger(__name__)

# Meta's Llama 3.1 frequency bands for rope_type llama3.
LLAMA3_FREQ_FACTORS = {"low_freq_factor": 1.0, "high_freq_factor": 4.0}


def rope_scaled_config(
    folder: str, model_args: ModelArgs, cutoff_len: int | None
) -> PretrainedConfig | None:
    """The model's config with RoPE scaling applied, or None when ``rope_scaling`` is unset."""
    if model_args.rope_scaling is None:
        return None
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(folder, trust_remote_code=model_args.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{folder}: config.json cannot be read: {exc}") from None
    apply_rope_scaling(config, model_args.rope_scaling, model_args.rope_factor, cutoff_len)
    return config


def apply_rope_scaling(
    config: PretrainedConfig, kind: str, factor: float | None, cutoff_len: int | None
) -> float | None:
    """Write `kind` scaling into ``config.rope_parameters``; return the factor used.

    Returns None (and says why) when no factor was given and cutoff_len already fits the
    model's context: scaling would only blur positions the model knows.
    """
    current = dict(getattr(config, "rope_parameters", None) or {})
    if "rope_theta" not in current:
        raise ConfigError(
            f"rope_scaling={kind}: {config.model_type} models do not use RoPE "
            f"(no rope_parameters in config.json); remove rope_scaling"
        )
    if config.nested_rope_parameter_keys(current):
        raise ConfigError(
            f"rope_scaling={kind}: {config.model_type} has different RoPE settings "
            f"per layer type, which tuneforge does not rescale; remove rope_scaling"
        )
    existing = current.get("rope_type", "default")
    if existing != "default":
        if existing == kind and factor in (None, current.get("factor")):
            logger.info(
                "RoPE scaling: the model already uses %s scaling with factor %s; kept",
                kind,
                current.get("factor"),
            )
            return current.get("factor")
        raise ConfigError(
            f"rope_scaling={kind}: the model already uses {existing} RoPE scaling "
            f"(factor {current.get('factor')}); remove rope_scaling/rope_factor "
            f"to keep it"
        )
    original = int(
        current.get("original_max_position_embeddings") or config.max_position_embeddings
    )
    reason = "as set in rope_factor"
    if factor is None:
        if cutoff_len is None or cutoff_len <= original:
            logger.warning(
                "rope_scaling=%s: cutoff_len %s fits in the model's %d positions; no "
                "scaling applied (set rope_factor to force one)",
                kind,
                cutoff_len,
                original,
            )
            return None
        factor = float(math.ceil(cutoff_len / original))
        reason = f"ceil(cutoff_len {cutoff_len} / the model's {original} positions)"
    parameters: dict[str, object] = {
        "rope_type": kind,
        "rope_theta": current["rope_theta"],
        "factor": factor,
    }
    if "partial_rotary_factor" in current:
        parameters["partial_rotary_factor"] = current["partial_rotary_factor"]
    if kind in ("yarn", "llama3"):
        parameters["original_max_position_embeddings"] = original
    if kind == "llama3":
        parameters.update(LLAMA3_FREQ_FACTORS)
    config.rope_parameters = parameters
    if kind != "dynamic":  # dynamic NTK stretches by itself past max_position_embeddings
        config.max_position_embeddings = int(original * factor)
    logger.info(
        "RoPE scaling: %s, factor %g (%s); the model now covers %d positions",
        kind,
        factor,
        reason,
        int(original * factor),
    )
    return factor
