"""PiSSA (LoRA started from each weight's principal components, peft's init) and OFT (peft's
orthogonal fine-tuning) through LLaMA-Factory's keys."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

import tuneforge
from tuneforge.config.load import load_config
from tuneforge.errors import ConfigError
from tuneforge.models.adapters import apply_finetuning
from tuneforge.models.load import load_adapter

TARGET = "base_model.model.model.layers.0.self_attn.q_proj"


def product(weights: dict, module: str) -> torch.Tensor:
    """B @ A of one module's LoRA pair, as saved."""
    return weights[f"{module}.lora_B.weight"] @ weights[f"{module}.lora_A.weight"]


def test_pissa_moves_the_principal_part_into_the_adapter_and_keeps_the_function(tiny_model_dir):
    cfg = load_config(
        {"model_name_or_path": str(tiny_model_dir), "dataset": "x", "pissa_init": True}
        | {"lora_rank": 4}
    )
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = apply_finetuning(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg.finetune, cfg.model
    )
    q = model.base_model.model.model.layers[0].self_attn.q_proj
    assert q.lora_B["default"].weight.abs().sum() > 0  # plain LoRA starts with B = 0
    assert not torch.allclose(q.base_layer.weight, original.model.layers[0].self_attn.q_proj.weight)
    ids = torch.randint(0, 100, (2, 10))
    with torch.no_grad():
        assert torch.allclose(
            model(input_ids=ids).logits, original(input_ids=ids).logits, atol=1e-4
        )


def test_pissa_convert_saves_plain_lora_of_the_original_weights(base_config, tmp_path):
    out = tuneforge.train(
        {**base_config, "pissa_init": True, "pissa_convert": True, "lora_rank": 4}
        | {"max_steps": 2, "save_steps": 2, "learning_rate": 1e-2}
    ).output_dir
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["r"] == 8 and saved["init_lora_weights"] is True  # rank 2r, a plain LoRA start
    start = load_file(out / "pissa_init" / "adapter_model.safetensors")
    trained = load_file(out / "checkpoint-2" / "adapter_model.safetensors")
    converted = load_file(out / "adapter_model.safetensors")
    # The converted adapter adds to the original weight what training changed: B1A1 - B0A0.
    expected = product(trained, TARGET) - product(start, TARGET)
    assert torch.allclose(product(converted, TARGET), expected, atol=1e-5)
    assert not torch.allclose(expected, torch.zeros_like(expected))


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"pissa_init": True, "finetuning_type": "full"}, "pissa_init needs finetuning_type=lora"),
        ({"pissa_init": True, "stage": "dpo"}, "set ref_model to the base model"),
        ({"pissa_init": True, "adapter_name_or_path": "a"}, "starts a new adapter"),
    ],
)
def test_pissa_conflicts_are_one_line(keys, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"dataset": "x", **keys})


def test_oft_trains_rotations_that_load_back_on_the_base(base_config, tiny_model_dir):
    out = tuneforge.train(
        {**base_config, "finetuning_type": "oft", "oft_block_size": 8, "max_steps": 3}
        | {"learning_rate": 1e-2}
    ).output_dir
    saved = json.loads((out / "adapter_config.json").read_text())
    assert saved["peft_type"] == "OFT" and saved["oft_block_size"] == 8
    names = load_file(out / "adapter_model.safetensors").keys()
    assert names and all(".oft_" in name for name in names)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = torch.randint(0, 100, (1, 8))
    with torch.no_grad():
        before = base(input_ids=ids).logits.clone()
        tuned = load_adapter(base, str(out), trainable=False)  # tuneforge's eval/chat path
        after = tuned(input_ids=ids).logits
    assert not torch.allclose(before, after, atol=1e-5)
