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
    "max_length": "LLaMA-Factory's limit on prompt plus generated tokens; tuneforge bounds "
    "answers with max_new_tokens and training samples with cutoff_len",
    # transformers' Seq2SeqTrainingArguments, and LLaMA-Factory's evaluation keys.
    "sortish_sampler": "use group_by_length: true to batch samples of similar length",
    "generation_max_length": "use max_new_tokens, which bounds the generated tokens only "
    "(this key counted the prompt too)",
    "batch_size": "use per_device_eval_batch_size, the batch of tuneforge eval",
    "save_dir": "give tuneforge eval --out, the folder of its predictions and metrics.json",
}

# Reasons shared by several keys of one LLaMA-Factory feature.
_VISION = "multimodal (vision) models are not supported"
_VIDEO = "multimodal (video) models are not supported"
_AUDIO = "multimodal (audio) models are not supported"
_FP8 = "FP8 training is not built"
_KT = "KTransformers is not supported"
_BEAMS = "beam search is not built"
_PPO = "PPO is not available (trl no longer ships it); use stage dpo or kto"
_SWANLAB = "SwanLab logging is not built; use report_to tensorboard, wandb or mlflow"
_RAY = "Ray launching is not built; use tuneforge's --nproc or torchrun"
_BENCH = "the MMLU, C-Eval and CMMLU benchmarks are not built; tuneforge eval scores your own data"

# LLaMA-Factory keys for features tuneforge does not have: key -> why, in a few words.
UNSUPPORTED_KEYS: Mapping[str, str] = {
    "use_unsloth": "Unsloth's patched kernels are CUDA-only and not built in; tuneforge's fused "
    "loss and packing are its own speed-ups",
    "use_unsloth_gc": "Unsloth's offloaded gradient checkpointing is CUDA-only; use "
    "gradient_checkpointing",
    "reward_model": "PPO is not available (trl no longer ships it), so there is no reward model "
    "to pass; use stage dpo or kto",
    "reward_model_type": "PPO is not available (trl no longer ships it); use stage dpo or kto",
    "image_max_pixels": "multimodal (vision) models are not supported",
    "image_min_pixels": "multimodal (vision) models are not supported",
    "video_max_pixels": "multimodal (video) models are not supported",
    "video_fps": "multimodal (video) models are not supported",
    "freeze_vision_tower": "multimodal (vision) models are not supported",
    "freeze_multi_modal_projector": "multimodal (vision) models are not supported",
    "train_mm_proj_only": "multimodal (vision) models are not supported",
    "shift_attn": "LongLoRA's shifted sparse attention is not built; use rope_scaling for longer "
    "contexts",
    "mixture_of_depths": "mixture-of-depths conversion is not built",
    "upcast_lmhead_output": "tuneforge's fused loss computes the head's output in float32 already",
    "moe_aux_loss_coef": "the MoE router's auxiliary loss weight is not passed through yet",
    "lora_bf16_mode": "tuneforge keeps trained weights in float32 and computes in bf16 under "
    "autocast",
    "use_reentrant_gc": "tuneforge uses non-reentrant gradient checkpointing, which works with "
    "frozen inputs",
    # BaseModelArguments
    "adapter_folder": "loading a folder of adapters is not built; give one in adapter_name_or_path",
    "split_special_tokens": "special tokens are never split into text pieces",
    "new_special_tokens_config": "token descriptions to start new embeddings from are not built",
    "init_special_tokens": "choosing how new token embeddings start is not built",
    "train_from_scratch": "training from random initial weights is not built",
    "offload_folder": "offloading weights to disk is not built",
    "use_v1_kernels": "LLaMA-Factory's v1 kernels are not built",
    "hf_hub_token": "there is no token key; huggingface_hub reads HF_TOKEN from the environment",
    "ms_hub_token": "the ModelScope hub is not supported",
    "om_hub_token": "the Modelers hub is not supported",
    # QuantizationArguments
    "quantization_device_map": "a quantised model goes on this process's GPU; "
    "device maps are not built",
    "fp8": _FP8,
    "fp8_backend": _FP8,
    "fp8_enable_fsdp_float8_all_gather": _FP8,
    # ProcessorArguments
    "image_do_pan_and_scan": _VISION,
    "crop_to_patches": _VISION,
    "video_min_pixels": _VIDEO,
    "video_maxlen": _VIDEO,
    "use_audio_in_video": _AUDIO,
    "audio_sampling_rate": _AUDIO,
    # KTransformersArguments
    "use_kt": _KT,
    "kt_optimize_rule": _KT,
    "cpu_infer": _KT,
    "chunk_size": _KT,
    "mode": _KT,
    "kt_maxlen": _KT,
    "kt_use_cuda_graph": _KT,
    "kt_mode": _KT,
    "kt_force_think": _KT,
    # DataArguments
    "media_dir": "multimodal (image, video and audio) data is not supported",
    "preprocessing_batch_size": "tokenisation uses datasets' default batch of 1000 rows",
    "eval_num_beams": _BEAMS,
    "eval_on_each_dataset": "scoring each validation dataset apart is not built",
    "enable_thinking": "reasoning (thinking) switches of chat templates are not built",
    "data_shared_file_system": "multi-node data preparation is not built",
    # RLHFArguments
    "pref_bco_weight": "the BCO term added to DPO is not built "
    "(pref_loss: bco_pair is trl's BCO loss)",
    "ppo_buffer_size": _PPO,
    "ppo_epochs": _PPO,
    "ppo_score_norm": _PPO,
    "ppo_target": _PPO,
    "ppo_whiten_rewards": _PPO,
    "ref_model_quantization_bit": "quantising the reference model is not built; "
    "it loads in the compute dtype",
    "reward_model_adapters": _PPO,
    "reward_model_quantization_bit": _PPO,
    "ld_alpha": "LD-DPO's length weighting is not passed through to trl yet",
    # SwanLabArguments
    "use_swanlab": _SWANLAB,
    "swanlab_project": _SWANLAB,
    "swanlab_workspace": _SWANLAB,
    "swanlab_run_name": _SWANLAB,
    "swanlab_mode": _SWANLAB,
    "swanlab_api_key": _SWANLAB,
    "swanlab_logdir": _SWANLAB,
    "swanlab_lark_webhook_url": _SWANLAB,
    "swanlab_lark_secret": _SWANLAB,
    # FinetuningArguments
    "use_mca": "Megatron-Core training is not supported",
    "freeze_language_model": _VISION,
    "disable_shuffling": "training in file order is not built; samples are shuffled by seed",
    "include_effective_tokens_per_second": "useful (non-padding) tokens/s is logged "
    "at every logging step already",
    # TrainingArguments (Ray)
    "ray_run_name": _RAY,
    "ray_storage_path": _RAY,
    "ray_storage_filesystem": _RAY,
    "ray_num_workers": _RAY,
    "resources_per_worker": _RAY,
    "placement_strategy": _RAY,
    "ray_init_kwargs": _RAY,
    # Seq2SeqTrainingArguments, GeneratingArguments
    "generation_num_beams": _BEAMS,
    "generation_config": "a generation config file is not read; set the generation keys "
    "(do_sample, temperature, top_p, max_new_tokens, ...)",
    "num_beams": _BEAMS,
    "length_penalty": _BEAMS,
    # EvaluationArguments
    "task": _BENCH,
    "task_dir": _BENCH,
    "lang": _BENCH,
    "n_shot": _BENCH,
    "download_mode": _BENCH,
}


# LLaMA-Factory keys for what tuneforge always does: accepted at the values that ask for it
# (so the configs run unchanged), refused with the reason at a value that asks otherwise.
FIXED_KEYS: Mapping[str, tuple[tuple[object, ...], str]] = {
    "upcast_layernorm": (
        (True, False),
        "trained weights, layer norms among them, are float32 in tuneforge already",
    ),
    "low_cpu_mem_usage": ((True, False), "tuneforge chooses how weights are loaded"),
    "use_kv_cache": ((True,), "generation always uses the KV cache"),
    "ignore_pad_token_for_loss": ((True,), "padding never counts in the loss"),
    "skip_special_tokens": ((True,), "special tokens are always removed from answers"),
    "predict_with_generate": ((True,), "do_predict always generates the answers"),
}
