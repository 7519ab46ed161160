"""LLaMA-Factory's add_tokens / add_special_tokens / resize_vocab: the tokenizer grows, the
embeddings grow with it, the new rows train, and the result loads back for eval and chat."""

from __future__ import annotations

import torch
from safetensors import safe_open

import tuneforge
from tuneforge.config.load import load_config
from tuneforge.models.load import load_adapter, load_model, load_tokenizer

NEW = ["<tool_call>", "</tool_call>"]


def test_special_tokens_stay_whole_and_the_embeddings_grow(tiny_model_dir):
    cfg = load_config(
        {"model_name_or_path": str(tiny_model_dir), "dataset": "x"}
        | {"add_special_tokens": ",".join(NEW), "add_tokens": "tuneforgeword"}
    )
    tokenizer = load_tokenizer(cfg.model)
    ids = tokenizer("<tool_call>tuneforgeword</tool_call>", add_special_tokens=False)["input_ids"]
    assert len(ids) == 3  # each added token is one id
    plain = cfg.model.model_copy(update={"add_tokens": None, "add_special_tokens": None})
    before = load_model(plain).get_input_embeddings().weight
    weight = load_model(cfg.model).get_input_embeddings().weight
    assert weight.shape[0] >= len(tokenizer) > max(ids) >= before.shape[0]
    assert weight.shape[0] % 64 == 0
    # New rows start at the mean of the old ones (transformers' mean_resizing), not at zero.
    assert torch.allclose(weight[max(ids)], before.mean(0), atol=1e-3)
    assert weight[max(ids)].abs().sum() > 0


def test_an_adapter_with_new_tokens_trains_their_rows_and_loads_back(base_config, tiny_model_dir):
    out = tuneforge.train(
        {**base_config, "add_special_tokens": ",".join(NEW), "max_steps": 2, "save_steps": 10}
    ).output_dir
    with safe_open(str(out / "adapter_model.safetensors"), framework="pt") as saved:
        embedding = [k for k in saved.keys() if "embed_tokens" in k]
        assert any("trainable_tokens_delta" in k for k in embedding)  # the new rows trained
        shape = saved.get_slice(next(k for k in embedding if "base_layer" in k)).get_shape()
    # eval/chat: the adapter folder's tokenizer says how large the base must grow.
    reloaded = load_config(
        {"model_name_or_path": str(tiny_model_dir), "adapter_name_or_path": str(out)}
        | {"do_train": False}
    )
    tokenizer = load_tokenizer(reloaded.model)
    assert set(NEW) <= set(tokenizer.get_vocab())
    base = load_model(reloaded.model, for_training=False)
    assert base.get_input_embeddings().weight.shape[0] == shape[0]
    tuned = load_adapter(base, str(out), trainable=False)
    ids = tokenizer("<tool_call>", add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.isfinite(tuned(input_ids=ids).logits).all()
