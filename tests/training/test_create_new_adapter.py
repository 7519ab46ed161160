"""LLaMA-Factory's create_new_adapter: merge the given adapter, train a new one on top, and
apply both (the merged one first) wherever the new one is loaded."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

import tuneforge
from tuneforge.config.load import load_config
from tuneforge.errors import ConfigError
from tuneforge.models.load import load_adapter


def test_a_new_adapter_trains_on_the_merged_one_and_loads_with_it(
    base_config, tiny_model_dir, tmp_path
):
    short = {**base_config, "max_steps": 2, "save_steps": 10}
    first = tuneforge.train({**short, "output_dir": str(tmp_path / "first")}).output_dir
    second = tuneforge.train(
        {**short, "output_dir": str(tmp_path / "second"), "adapter_name_or_path": str(first)}
        | {"create_new_adapter": True}
    ).output_dir
    ids = torch.randint(0, 100, (1, 9))

    def logits(model):
        with torch.no_grad():
            return model(input_ids=ids).logits

    def base():
        return AutoModelForCausalLM.from_pretrained(tiny_model_dir)

    # By hand with plain peft: the first adapter merged, then the second on top.
    merged = PeftModel.from_pretrained(base(), str(first)).merge_and_unload()
    expected = logits(PeftModel.from_pretrained(merged, str(second)))
    assert torch.allclose(
        logits(load_adapter(base(), str(second), trainable=False)), expected, atol=1e-5
    )
    # The second adapter alone on the base model is a different model: both are needed.
    alone = logits(PeftModel.from_pretrained(base(), str(second)))
    assert not torch.allclose(alone, expected, atol=1e-4)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "needs adapter_name_or_path"),
        ({"adapter_name_or_path": "a", "quantization_bit": 4}, "remove quantization_bit"),
        ({"adapter_name_or_path": "a", "stage": "dpo"}, "keeps it as the reference"),
    ],
)
def test_create_new_adapter_is_checked(keys, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"dataset": "x", "create_new_adapter": True, **keys})
