"""Loading: special tokens checked, attention kernel and cache set, broken folders in one line."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tuneforge.config.schema import ModelArgs
from tuneforge.errors import ConfigError, ModelError
from tuneforge.models import load_model, load_tokenizer

IM_END = 2  # <|im_end|>: the default model's end of turn, sequence and padding


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    path.write_text(json.dumps(data))


def test_default_tokenizer_ends_and_pads_with_im_end(default_model_dir):
    tokenizer = load_tokenizer(ModelArgs())
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == IM_END


def test_tokenizer_eos_that_the_model_does_not_use_is_replaced(tiny_model_dir, tmp_path, caplog):
    folder = _copy(tiny_model_dir, tmp_path / "model")
    _edit_json(folder / "tokenizer_config.json", eos_token="<|endoftext|>")
    with caplog.at_level(logging.WARNING):
        tokenizer = load_tokenizer(ModelArgs(model_name_or_path=str(folder)))
    assert tokenizer.eos_token_id == IM_END
    assert "'<|endoftext|>'" in caplog.text


def test_missing_pad_token_becomes_eos(tiny_model_dir, tmp_path):
    folder = _copy(tiny_model_dir, tmp_path / "model")
    _edit_json(folder / "tokenizer_config.json", pad_token=None)
    tokenizer = load_tokenizer(ModelArgs(model_name_or_path=str(folder)))
    assert tokenizer.pad_token_id == tokenizer.eos_token_id == IM_END


def test_adapter_folder_tokenizer_wins(tiny_model_dir, tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_model_dir / name, adapter)
    (adapter / "chat_template.jinja").write_text("{{ 'trained template' }}")
    tokenizer = load_tokenizer(
        ModelArgs(model_name_or_path=str(tiny_model_dir), adapter_name_or_path=str(adapter))
    )
    assert tokenizer.chat_template == "{{ 'trained template' }}"


@pytest.mark.parametrize(
    ("flash_attn", "kernel"),
    [("auto", "tuneforge_packed_sdpa"), ("sdpa", "sdpa"), ("disabled", "eager")],
)
def test_attention_kernel_follows_flash_attn(tiny_model_dir, flash_attn, kernel):
    model = load_model(ModelArgs(model_name_or_path=str(tiny_model_dir), flash_attn=flash_attn))
    assert model.config._attn_implementation == kernel


def test_fa2_without_cuda_and_flash_attn_is_a_config_error(tiny_model_dir):
    if torch.cuda.is_available():
        pytest.importorskip("flash_attn", reason="this test is about fa2 being unavailable")
        pytest.skip("CUDA and flash-attn are both here")
    with pytest.raises(ConfigError, match=r"^flash_attn=fa2 needs a CUDA GPU and the flash-attn"):
        load_model(ModelArgs(model_name_or_path=str(tiny_model_dir), flash_attn="fa2"))


def test_training_load_has_no_cache_and_inference_load_is_in_eval_mode(tiny_model_dir):
    args = ModelArgs(model_name_or_path=str(tiny_model_dir))
    trained = load_model(args)
    assert trained.config.use_cache is False
    assert all(p.dtype == torch.float32 for p in trained.parameters())
    served = load_model(args, dtype=torch.bfloat16, for_training=False)
    assert served.config.use_cache is True and not served.training
    assert all(p.dtype == torch.bfloat16 for p in served.parameters())


def _no_weights(folder: Path) -> None:
    (folder / "model.safetensors").unlink()


def _truncated_weights(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _one_tensor_missing(folder: Path) -> None:
    tensors = load_file(folder / "model.safetensors")
    del tensors["model.layers.1.mlp.down_proj.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def _shapes_differ_from_config(folder: Path) -> None:
    _edit_json(folder / "config.json", intermediate_size=48)


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_no_weights, "no file named model.safetensors"),
        (_truncated_weights, "the model cannot be loaded"),
        (
            _one_tensor_missing,
            "1 weight tensor(s) missing from the checkpoint "
            "(first: model.layers.1.mlp.down_proj.weight)",
        ),
        (_shapes_differ_from_config, "weight shapes differ from those config.json describes"),
    ],
)
def test_broken_model_folder_is_one_line_naming_it(tiny_model_dir, tmp_path, damage, why):
    folder = _copy(tiny_model_dir, tmp_path / "broken")
    damage(folder)
    with pytest.raises(ModelError) as caught:
        load_model(ModelArgs(model_name_or_path=str(folder)))
    message = str(caught.value)
    assert message.startswith(f"{folder}: ") and "\n" not in message
    assert why in message


@pytest.mark.slow
def test_default_model_answers_paris(default_model_dir):
    args = ModelArgs()
    tokenizer = load_tokenizer(args)
    model = load_model(args, for_training=False)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        output = model.generate(
            **inputs, max_new_tokens=20, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer
