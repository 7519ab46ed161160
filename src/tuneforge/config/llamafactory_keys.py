"""LLaMA-Factory's config keys that tuneforge does not read as they are: old names it renames,
keys whose meaning changed shape, and features it does not have, each with its reason, so a
config brought from LLaMA-Factory gets a sentence instead of "unknown key".

docs/llamafactory.md lists every key of LLaMA-Factory's argument classes; its test holds the
page and these tables to the same answers.
"""

from __future__ import annotations

from collections.abc import Mapping

# Old LLaMA-Factory / transformers names -> current names.
RENAMED_KEYS: Mapping[str, str] = {
    "checkpoint_dir": "adapter_name_or_path",
    "num_layer_trainable": "freeze_trainable_layers",
    "name_module_trainable": "freeze_trainable_modules",
    "evaluation_strategy": "eval_strategy",
    "prompt_template": "template",
}

# LLaMA-Factory keys whose meaning changed shape; each needs a sentence, not a rename.
REPLACED_KEYS: Mapping[str, str] = {
    "max_source_length": "replaced by cutoff_len (prompt and response together)",
    "max_target_length": "replaced by cutoff_len (prompt and response together)",
    "predict_with_generate": "do_predict always generates; remove the key",
    "max_length": "LLaMA-Factory's limit on prompt plus generated tokens; tuneforge bounds "
    "answers with max_new_tokens and training samples with cutoff_len",
}

# LLaMA-Factory keys for features tuneforge does not have: key -> why, in a few words.
UNSUPPORTED_KEYS: Mapping[str, str] = {
    "use_unsloth": "Unsloth's patched kernels are CUDA-only and not built in; tuneforge's fused loss and packing are its own speed-ups",
    "use_unsloth_gc": "Unsloth's offloaded gradient checkpointing is CUDA-only; use gradient_checkpointing",
    "reward_model": "PPO is not available (trl no longer ships it), so there is no reward model to pass; use stage dpo or kto",
    "reward_model_type": "PPO is not available (trl no longer ships it); use stage dpo or kto",
    "image_max_pixels": "multimodal (vision) models are not supported",
    "image_min_pixels": "multimodal (vision) models are not supported",
    "video_max_pixels": "multimodal (video) models are not supported",
    "video_fps": "multimodal (video) models are not supported",
    "freeze_vision_tower": "multimodal (vision) models are not supported",
    "freeze_multi_modal_projector": "multimodal (vision) models are not supported",
    "train_mm_proj_only": "multimodal (vision) models are not supported",
    "shift_attn": "LongLoRA's shifted sparse attention is not built; use rope_scaling for longer contexts",
    "mixture_of_depths": "mixture-of-depths conversion is not built",
    "upcast_lmhead_output": "tuneforge's fused loss computes the head's output in float32 already",
    "moe_aux_loss_coef": "the MoE router's auxiliary loss weight is not passed through yet",
    "lora_bf16_mode": "tuneforge keeps trained weights in float32 and computes in bf16 under autocast",
    "pure_bf16": "tuneforge keeps trained weights in float32 and computes in bf16 under autocast (bf16: true)",
    "use_reentrant_gc": "tuneforge uses non-reentrant gradient checkpointing, which works with frozen inputs",
}
