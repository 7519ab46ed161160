"""Tiny Llama models with a small byte-level BPE vocabulary, for fast GGUF round trips.

The default model's 49k-token vocabulary makes every GGUF read take seconds; a 300-token one
exercises the same code (vocabulary, merges, special tokens, chat template) in milliseconds.
The weights are drawn wider than usual so next-token predictions are clear-cut, not ties.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

TEXT = [
    "Who are you? I am a small assistant. What is the capital of France? Paris is.",
    "Write a short poem about autumn leaves falling slowly in the evening light.",
    "What is 12 times 7? Twelve times seven is 84. Explain step by step.",
    "请用一句话介绍你自己。我是一个小助手。",
]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def build_small_vocab_model(folder: Path) -> Path:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tuneforge.data import NAMED_TEMPLATES

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        TEXT,
        trainers.BpeTrainer(
            vocab_size=320,
            special_tokens=SPECIAL,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = NAMED_TEMPLATES["chatml"].source
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_llama_adapter(tmp_path_factory, make_lora_adapter) -> Path:
    base = build_small_vocab_model(tmp_path_factory.mktemp("small-llama"))
    return make_lora_adapter(base, tmp_path_factory.mktemp("small-llama-lora"))


def base_plus_adapter(adapter_dir: Path):
    """The unmerged model, loaded with plain transformers + peft (not tuneforge's loaders)."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = json.loads((adapter_dir / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    return PeftModel.from_pretrained(model, adapter_dir).eval()


@pytest.fixture(scope="session")
def unmerged():
    """`base_plus_adapter` for the tests."""
    return base_plus_adapter
