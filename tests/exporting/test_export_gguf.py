"""GGUF export: written with the gguf package, read back by transformers' gguf_file loader."""

from __future__ import annotations

import pytest
import torch

import tuneforge
from tuneforge.exporting.verify import PROBES

# Per weight type, on the tiny model (32-wide, weights drawn with std 0.2): the largest logit
# difference from base+adapter as a share of the largest logit (seen: f32 2e-6, f16 4e-3,
# q8_0 7e-2), and the share of positions whose next-token prediction must agree. f32 is exact
# up to float rounding; f16 and q8_0 round the weights, q8_0 in blocks of 32 values.
RELATIVE_TOLERANCE = {"f32": 1e-5, "f16": 1e-2, "q8_0": 0.15}
AGREEMENT = {"f32": 1.0, "f16": 1.0, "q8_0": 0.9}


def logits_of(model, tokenizer) -> list[torch.Tensor]:
    out = []
    with torch.no_grad():
        for text in PROBES:
            ids = tokenizer.apply_chat_template(
                [{"role": "user", "content": text}],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )["input_ids"]
            out.append(model(input_ids=ids).logits[0])
    return out


@pytest.mark.parametrize("quant", ["f32", "f16", "q8_0"])
def test_a_gguf_predicts_what_base_plus_adapter_predicts(
    small_llama_adapter, tmp_path, quant, unmerged
):
    from gguf import GGUFReader
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path / f"small-{quant}.gguf"
    result = tuneforge.export(small_llama_adapter, path, quant=quant)
    assert result.ok, [str(check) for check in result.checks]
    assert {check.name for check in result.checks} >= {"GGUF vs base+adapter", "GGUF tokenizer"}

    tokenizer = AutoTokenizer.from_pretrained(small_llama_adapter)
    fields = GGUFReader(path).fields
    assert fields["tokenizer.chat_template"].contents() == tokenizer.chat_template
    assert fields["tokenizer.ggml.model"].contents() == "gpt2"
    assert fields["tokenizer.ggml.eos_token_id"].contents() == tokenizer.eos_token_id

    reloaded = AutoModelForCausalLM.from_pretrained(
        tmp_path, gguf_file=path.name, dtype=torch.float32
    )
    expected = logits_of(unmerged(small_llama_adapter), tokenizer)
    got = logits_of(reloaded, tokenizer)
    for want, have in zip(expected, got, strict=True):
        gap = float((want - have).abs().max()) / float(want.abs().max())
        agreement = float((want.argmax(-1) == have.argmax(-1)).float().mean())
        assert gap < RELATIVE_TOLERANCE[quant] and agreement >= AGREEMENT[quant]

    modelfile = result.modelfile.read_text()
    assert modelfile.startswith(f"FROM ./{path.name}\n")
    assert 'PARAMETER stop "<|im_end|>"' in modelfile


@pytest.mark.slow
def test_the_default_model_with_an_adapter_round_trips_through_q8_0(
    default_model_dir, tmp_path, make_lora_adapter
):
    adapter = make_lora_adapter(default_model_dir, tmp_path / "lora", rank=2)
    result = tuneforge.export(adapter, tmp_path / "smollm2-tuned.gguf", quant="q8_0")
    assert result.ok, [str(check) for check in result.checks]
    by_name = {check.name: check for check in result.checks}
    assert (
        by_name["merged folder vs base+adapter"].agreed
        == by_name["merged folder vs base+adapter"].total
    )
    assert by_name["GGUF tokenizer"].agreed == len(PROBES)
