"""RoPE scaling round-trips: what training used is what chat rebuilds, LoRA and full alike."""

from __future__ import annotations

import json
import logging

import torch

import tuneforge
from tuneforge.config import ModelArgs
from tuneforge.infer import load_chat_model, resolve_model
from tuneforge.models import load_model


def unscaled_inv_freq(model_dir) -> torch.Tensor:
    return load_model(ModelArgs(model_name_or_path=str(model_dir))).model.rotary_emb.inv_freq


def test_lora_run_is_served_with_the_scaling_it_was_trained_with(
    base_config, tiny_model_dir, caplog
):
    # the tiny model knows 1024 positions; cutoff_len 2048 -> factor 2
    base_config.update(rope_scaling="linear", cutoff_len=2048, max_steps=2)
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        out = tuneforge.train(base_config).output_dir
    assert (
        "RoPE scaling: linear, factor 2 (ceil(cutoff_len 2048 / the model's 1024 "
        "positions))" in caplog.text
    )

    chat = load_chat_model(resolve_model(out))  # the adapter merged into the weights
    rope = chat.model.model.rotary_emb
    assert chat.model.config.rope_parameters["factor"] == 2.0
    assert torch.allclose(rope.inv_freq, unscaled_inv_freq(tiny_model_dir) / 2)


def test_full_run_saves_the_scaling_and_is_not_scaled_twice(base_config, tiny_model_dir):
    base_config.update(
        rope_scaling="yarn",
        cutoff_len=3000,
        max_steps=1,
        finetuning_type="full",
        learning_rate=1e-4,
    )
    out = tuneforge.train(base_config).output_dir
    saved = json.loads((out / "config.json").read_text())
    assert saved["rope_parameters"]["rope_type"] == "yarn"
    assert saved["rope_parameters"]["factor"] == 3.0
    assert saved["rope_parameters"]["original_max_position_embeddings"] == 1024
    assert saved["max_position_embeddings"] == 3072

    chat = load_chat_model(resolve_model(out))  # the same keys again: kept, not 9x
    assert chat.model.config.rope_parameters["factor"] == 3.0
    assert chat.model.config.max_position_embeddings == 3072
