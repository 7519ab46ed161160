"""QLoRA end to end on CPU: train on 4/8-bit weights, get an adapter for the unquantised base."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import tuneforge
from tuneforge.infer import load_chat_model, resolve_model
from tuneforge.models import is_quantized

pytest.importorskip("bitsandbytes")


def losses(out) -> list[float]:
    entries = [json.loads(x) for x in (out / "trainer_log.jsonl").read_text().splitlines()]
    return [e["loss"] for e in entries if "loss" in e]


def check_adapter_on_unquantised_base(base_dir, out) -> None:
    """The saved adapter loads in plain peft on the 32-bit base, with the trained values."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, out)
    assert not is_quantized(model)
    saved = load_file(out / "adapter_model.safetensors")
    loaded = {
        name.replace(".default", ""): p for name, p in model.named_parameters() if "lora_" in name
    }
    assert len(saved) == len(loaded) > 0
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name
    assert any(tensor.abs().sum() > 0 for name, tensor in saved.items() if "lora_B" in name)


@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_trains_and_the_adapter_fits_the_unquantised_base(
    base_config, wide_tiny_model_dir, bits
):
    base_config.update(
        model_name_or_path=str(wide_tiny_model_dir),
        quantization_bit=bits,
        max_steps=6,
        save_steps=3,
        learning_rate=1e-2,
    )
    out = tuneforge.train(base_config).output_dir
    trained = losses(out)
    assert len(trained) == 6 and trained[-1] < trained[0]
    check_adapter_on_unquantised_base(wide_tiny_model_dir, out)

    chat = load_chat_model(resolve_model(out))  # chat loads the base as training did
    assert is_quantized(chat.model)


@pytest.mark.slow
@pytest.mark.parametrize("bits", [4, 8])
def test_qlora_on_the_default_model(base_config, default_model_dir, bits):
    base_config.update(
        model_name_or_path=str(default_model_dir),
        quantization_bit=bits,
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        lora_target="q_proj,v_proj",
        save_steps=2,
    )
    out = tuneforge.train(base_config).output_dir
    assert len(losses(out)) == 2 and all(0 < x < 20 for x in losses(out))
    check_adapter_on_unquantised_base(default_model_dir, out)
