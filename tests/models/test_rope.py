"""RoPE scaling: the factor from cutoff_len, each type's rope_parameters, no double scaling."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import GPT2Config, LlamaConfig

from tuneforge.config import ModelArgs
from tuneforge.errors import ConfigError
from tuneforge.models import load_model
from tuneforge.models.rope import apply_rope_scaling


def llama(**kwargs) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        max_position_embeddings=1024,
        rope_theta=50000.0,
        **kwargs,
    )


def test_linear_factor_comes_from_cutoff_len():
    config = llama()
    assert apply_rope_scaling(config, "linear", None, 3000) == 3.0
    assert config.rope_parameters == {"rope_type": "linear", "rope_theta": 50000.0, "factor": 3.0}
    assert config.max_position_embeddings == 3072


@pytest.mark.parametrize("kind", ["yarn", "llama3"])
def test_yarn_and_llama3_keep_the_original_context(kind):
    config = llama()
    apply_rope_scaling(config, kind, 4.0, None)
    assert config.rope_parameters["original_max_position_embeddings"] == 1024
    assert config.rope_parameters["factor"] == 4.0
    assert config.max_position_embeddings == 4096
    if kind == "llama3":
        assert (
            config.rope_parameters["low_freq_factor"],
            config.rope_parameters["high_freq_factor"],
        ) == (1.0, 4.0)
    config.validate_rope()  # transformers accepts what was written


def test_dynamic_leaves_max_positions_alone():
    config = llama()
    apply_rope_scaling(config, "dynamic", None, 2048)
    assert config.rope_parameters["rope_type"] == "dynamic"
    assert config.max_position_embeddings == 1024


def test_no_scaling_when_cutoff_len_fits(caplog):
    config = llama()
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        assert apply_rope_scaling(config, "linear", None, 1024) is None
    assert config.rope_parameters["rope_type"] == "default"
    assert "cutoff_len 1024 fits in the model's 1024 positions; no scaling applied" in caplog.text


def test_a_model_scaled_before_is_not_scaled_twice():
    config = llama()
    apply_rope_scaling(config, "linear", None, 2048)
    assert apply_rope_scaling(config, "linear", None, 2048) == 2.0
    assert config.max_position_embeddings == 2048 and config.rope_parameters["factor"] == 2.0
    with pytest.raises(ConfigError, match="already uses linear RoPE scaling \\(factor 2.0\\)"):
        apply_rope_scaling(config, "yarn", None, 2048)


def test_a_model_without_rope_is_refused():
    with pytest.raises(ConfigError, match="gpt2 models do not use RoPE"):
        apply_rope_scaling(GPT2Config(), "linear", 2.0, None)


def test_loaded_model_rotates_with_the_scaled_frequencies(tiny_model_dir):
    plain = load_model(ModelArgs(model_name_or_path=str(tiny_model_dir)))
    scaled = load_model(
        ModelArgs(model_name_or_path=str(tiny_model_dir), rope_scaling="linear"), cutoff_len=4096
    )
    assert scaled.config.rope_parameters["factor"] == 4.0
    assert torch.allclose(scaled.model.rotary_emb.inv_freq, plain.model.rotary_emb.inv_freq / 4)
