"""GGUF exports as llama.cpp runs them (llama-cpp-python, the gguf-quant extra): k-quants made
by llama.cpp's quantiser, every file loaded by llama.cpp's runtime and chatted with through the
chat template in the file."""

from __future__ import annotations

import pytest
import torch

import tuneforge
from tuneforge.errors import ConfigError
from tuneforge.exporting import llamacpp
from tuneforge.exporting.verify import PROBES

needs_llama_cpp = pytest.mark.skipif(
    not llamacpp.available(),
    reason="needs llama-cpp-python: pip install 'tuneforge[gguf-quant]' (builds llama.cpp)",
)

# Next-token agreement of llama.cpp running the export with the float32 model in transformers,
# at every position of the five probe prompts (202 positions), default model, measured
# 2026-12-07 (docs/benchmarks.md): q8_0 0.926, q5_k_m 0.856, q4_k_m 0.916 (f16 1.0). llama.cpp
# also rounds the activations to 8 bits in its quantised matrix products, so it agrees less
# than transformers' reading of the same file (q8_0: 0.970).
AGREEMENT = {"q8_0": 0.9, "q5_k_m": 0.8, "q4_k_m": 0.8}


def test_the_cli_accepts_every_weight_type_the_export_writes():
    from tuneforge.cli import build_parser
    from tuneforge.exporting.pipeline import QUANTS

    for quant in QUANTS:
        args = build_parser().parse_args(["export", "--out", "x.gguf", "--quant", quant])
        assert args.quant == quant
    assert QUANTS[-2:] == ("q5_k_m", "q4_k_m")


def test_a_k_quant_without_llama_cpp_names_the_extra(monkeypatch, tiny_adapter_dir, tmp_path):
    monkeypatch.setattr(llamacpp, "available", lambda: False)
    with pytest.raises(ConfigError) as caught:
        tuneforge.export(tiny_adapter_dir, tmp_path / "out.gguf", quant="q4_k_m")
    assert "pip install 'tuneforge[gguf-quant]'" in str(caught.value)
    assert not list(tmp_path.iterdir())


@needs_llama_cpp
@pytest.mark.parametrize("quant", ["q8_0", "q4_k_m"])
def test_llama_cpp_runs_a_small_export_as_transformers_reads_it(
    small_llama_adapter, tmp_path, quant
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tmp_path / f"small-{quant}.gguf"
    result = tuneforge.export(small_llama_adapter, path, quant=quant)
    by_name = {check.name: check for check in result.checks}
    # The tiny model's wide random weights flip many predictions at 5 bits (q4_k_m keeps
    # ~71% of them), so only the 8-bit export must pass against base+adapter.
    assert by_name["llama.cpp vs base+adapter"].ok or quant == "q4_k_m"
    assert by_name["llama.cpp tokenizer"].agreed == len(PROBES)
    # The f32 file llama.cpp quantised from is gone; only the export and its Modelfile remain.
    assert {p.name for p in tmp_path.iterdir()} == {path.name, path.stem + ".Modelfile"}
    kinds = llamacpp.tensor_types(path)
    assert "Q8_0" in kinds if quant == "q8_0" else "Q5_0" in kinds  # 32 columns: no k-blocks

    # Two readers of one file: llama.cpp's runtime and transformers' dequantising loader.
    tokenizer = AutoTokenizer.from_pretrained(small_llama_adapter)
    prompts = probe_ids(tokenizer)
    read = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=path.name, dtype=torch.float32)
    with torch.no_grad():
        expected = [read(input_ids=torch.tensor([ids])).logits[0] for ids in prompts]
    llm = llamacpp.load(path, logits_all=True)
    ran = llamacpp.logits_at_every_position(llm, prompts)
    llm.close()
    # llama.cpp also rounds the activations to 8 bits inside quantised matrix products, so the
    # two differ by a few percent (q4_k_m here: largest logit difference ~7% of the largest
    # logit, ~2% in norm), never by a misread tensor, which would be of the logits' own size.
    for want, got in zip(expected, ran, strict=True):
        assert float((want - got).norm() / want.norm()) < 0.05
        assert float((want.argmax(-1) == got.argmax(-1)).float().mean()) >= 0.95


def hf_logits(model_dir, tokenizer) -> list[torch.Tensor]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    out = []
    with torch.no_grad():
        for ids in probe_ids(tokenizer):
            out.append(model(input_ids=torch.tensor([ids])).logits[0])
    return out


def probe_ids(tokenizer) -> list[list[int]]:
    return [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True, return_dict=True
        )["input_ids"]
        for text in PROBES
    ]


@pytest.fixture(scope="module")
def reference(default_model_dir, tokenizer) -> list[torch.Tensor]:
    return hf_logits(default_model_dir, tokenizer)


@needs_llama_cpp
@pytest.mark.slow
@pytest.mark.parametrize("quant", ["q8_0", "q5_k_m", "q4_k_m"])
def test_llama_cpp_chats_with_the_exported_default_model(
    default_model_dir, tokenizer, reference, tmp_path, quant
):
    path = tmp_path / f"smollm2-{quant}.gguf"
    result = tuneforge.export(default_model_dir, path, quant=quant)
    assert result.ok, [str(check) for check in result.checks]

    llm = llamacpp.load(path, n_ctx=512)
    assert llm.metadata["tokenizer.chat_template"] == tokenizer.chat_template
    # A question the export's checks never asked, answered through the file's chat template.
    reply = llm.create_chat_completion(
        [{"role": "user", "content": "What is the capital of Japan?"}],
        temperature=0.0,
        max_tokens=24,
    )
    assert "Tokyo" in reply["choices"][0]["message"]["content"]
    llm.close()

    llm = llamacpp.load(path, n_ctx=512, logits_all=True)
    ran = llamacpp.logits_at_every_position(llm, probe_ids(tokenizer))
    llm.close()
    pairs = list(zip(reference, ran, strict=True))
    agreed = sum(int((want.argmax(-1) == got.argmax(-1)).sum()) for want, got in pairs)
    total = sum(want.shape[0] for want in reference)
    assert agreed / total >= AGREEMENT[quant], f"{agreed}/{total}"
