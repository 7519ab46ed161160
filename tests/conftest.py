"""Shared fixtures: the real default model (cached once per machine) and tiny random models.

Unit tests use a tiny random Llama that shares the default model's tokenizer and chat
template, so they run in seconds; only tests marked ``slow`` load the real weights.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked ``gpu`` need CUDA; on a machine without it they are skipped, saying so."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    from tuneforge.models.default import ensure_default_model

    return ensure_default_model()


@pytest.fixture(scope="session")
def tokenizer(default_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_dir)


def build_tiny_model(
    folder: Path, tokenizer, *, layers: int = 2, seed: int = 0, hidden_size: int = 32
) -> Path:
    """Save a tiny random Llama with the default model's tokenizer into `folder`.

    bitsandbytes' 4-bit CPU kernels need layers at least 64 wide (``hidden_size=64``).
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def make_tiny_model():
    """`build_tiny_model` for tests that need another size."""
    return build_tiny_model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"), tokenizer)


@pytest.fixture(scope="session")
def wide_tiny_model_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny model wide enough for bitsandbytes' 4-bit CPU kernels."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama-64"), tokenizer, hidden_size=64)


def build_lora_adapter(base_dir: Path, folder: Path, *, seed: int = 0, rank: int = 4) -> Path:
    """Save a LoRA adapter with random (non-zero) weights on every linear layer of `base_dir`,
    with the base's tokenizer, as a training run would leave it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules="all-linear", init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def make_lora_adapter():
    """`build_lora_adapter` for tests that need an adapter on another model."""
    return build_lora_adapter


@pytest.fixture(scope="session")
def tiny_adapter_dir(tmp_path_factory, tiny_model_dir) -> Path:
    """A plain peft LoRA adapter (no tuneforge config) on the tiny model."""
    return build_lora_adapter(tiny_model_dir, tmp_path_factory.mktemp("tiny-lora"))


WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture(scope="session")
def tool_caller_dir(tmp_path_factory, tokenizer) -> Path:
    """A tiny model trained (about a minute on a CPU) on one conversation: asked for the
    weather in Paris it calls ``get_weather({"city": "Paris"})``, and given the result "18 C"
    it answers "It is 18 C in Paris.", so tool chat can be tested on real generation. Its tool
    schema is in ``tools.json`` beside the folder."""
    import json

    import tuneforge

    root = tmp_path_factory.mktemp("tool-caller")
    base = build_tiny_model(root / "base", tokenizer, hidden_size=128)
    row = {
        "conversations": [
            {"from": "human", "value": "Weather in Paris?"},
            {
                "from": "function_call",
                "value": json.dumps({"name": "get_weather", "arguments": {"city": "Paris"}}),
            },
            {"from": "observation", "value": "18 C"},
            {"from": "gpt", "value": "It is 18 C in Paris."},
        ],
        "tools": json.dumps([WEATHER_TOOL]),
    }
    (root / "calls.json").write_text(json.dumps([row] * 8))
    columns = {"messages": "conversations", "tools": "tools"}
    info = {"calls": {"file_name": "calls.json", "formatting": "sharegpt", "columns": columns}}
    (root / "dataset_info.json").write_text(json.dumps(info))
    (root / "tools.json").write_text(json.dumps([WEATHER_TOOL]))
    result = tuneforge.train(
        {
            "model_name_or_path": str(base),
            "dataset": "calls",
            "dataset_dir": str(root),
            "cutoff_len": 512,
            "output_dir": str(root / "out"),
            "finetuning_type": "full",
            "per_device_train_batch_size": 1,
            "learning_rate": 5e-3,
            "lr_scheduler_type": "constant",
            "max_steps": 70,
            "save_strategy": "no",
            "report_to": "none",
            "seed": 7,
        }
    )
    return result.output_dir
