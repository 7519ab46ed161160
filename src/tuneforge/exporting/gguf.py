"""Write a merged Llama-family model as a GGUF file (llama.cpp, Ollama) with the `gguf` package.

llama.cpp stores the query and key projections with their rotary halves interleaved, so those
two weights are permuted on the way out (transformers' GGUF loader undoes it on the way in).
Norms stay float32 in every format, as llama.cpp expects; in q8_0, a matrix whose rows are not
a multiple of the 32-value block is written in f16. The tokenizer (vocabulary, merges, special
ids) and the chat template go into the file's metadata, so the file is complete on its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from tuneforge.config.schema import GenerationArgs
from tuneforge.data import Template
from tuneforge.errors import ModelError

logger = logging.getLogger(__name__)

# Hugging Face model_type -> the GGUF architecture llama.cpp runs it as.
ARCHITECTURES: Mapping[str, str] = MappingProxyType({"llama": "llama"})
QUANTS = ("f32", "f16", "q8_0")

# How llama.cpp names a byte-level BPE pre-tokenizer, by its tokenizer.json form.
_BYTE_LEVEL = {
    "type": "ByteLevel",
    "add_prefix_space": False,
    "trim_offsets": True,
    "use_regex": True,
}
_DIGITS = {"type": "Digits", "individual_digits": True}


def check_supported(config: Any, tokenizer: Any) -> None:
    """Refuse, before any weights load, what this writer cannot export faithfully."""
    kind = config.model_type
    if kind not in ARCHITECTURES:
        raise ModelError(
            f"GGUF export supports {', '.join(ARCHITECTURES)} models; this one is "
            f"'{kind}'. Use --format hf for a Hugging Face folder instead"
        )
    rope = (getattr(config, "rope_parameters", None) or {}).get("rope_type", "default")
    if rope != "default":
        raise ModelError(
            f"GGUF export: RoPE scaling '{rope}' is not supported yet; use --format hf"
        )
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ModelError(
            "GGUF export: Llama models with attention or MLP biases are not "
            "supported yet; use --format hf"
        )
    model = _tokenizer_json(tokenizer)["model"]
    if model.get("type") != "BPE" or model.get("byte_fallback"):
        found = "sentencepiece-style BPE" if model.get("byte_fallback") else model.get("type")
        raise ModelError(
            f"GGUF export supports byte-level BPE tokenizers (SmolLM, Llama 3, "
            f"GPT-2 style); this tokenizer is {found}; use --format hf"
        )


def write_gguf(model: Any, tokenizer: Any, folder: Path, path: Path, quant: str, name: str) -> None:
    """Write `model` (merged, float32) to `path`; `folder` is its saved Hugging Face folder,
    read for the merges, special token ids and chat template."""
    import gguf

    config = model.config
    check_supported(config, tokenizer)
    file_type = {
        "f32": gguf.LlamaFileType.ALL_F32,
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[quant]
    writer = gguf.GGUFWriter(path, ARCHITECTURES[config.model_type])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    _add_hyperparameters(writer, config)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    _add_tokenizer(writer, tokenizer, folder, config.vocab_size)
    _add_tensors(writer, model, quant)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file(progress=True)
    writer.close()


def write_modelfile(gguf_path: Path, template: Template, gen: GenerationArgs) -> Path:
    """An Ollama Modelfile beside the GGUF: stop words, sampling and the default system prompt.
    Ollama reads the chat template from the GGUF's metadata."""
    lines = [f"FROM ./{gguf_path.name}"]
    lines += [f"PARAMETER stop {json.dumps(word)}" for word in template.stop_words]
    if gen.do_sample:
        lines += [
            f"PARAMETER temperature {gen.temperature}",
            f"PARAMETER top_p {gen.top_p}",
            f"PARAMETER top_k {gen.top_k}",
        ]
    else:
        lines.append("PARAMETER temperature 0")
    if gen.repetition_penalty != 1.0:
        lines.append(f"PARAMETER repeat_penalty {gen.repetition_penalty}")
    if template.default_system:
        lines.append(f'SYSTEM """{template.default_system}"""')
    path = gguf_path.with_suffix(".Modelfile")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _add_hyperparameters(writer: Any, config: Any) -> None:
    heads = config.num_attention_heads
    rope_theta = (getattr(config, "rope_parameters", None) or {}).get(
        "rope_theta", getattr(config, "rope_theta", 10000.0)
    )
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.num_key_value_heads or heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_rope_dimension_count(
        getattr(config, "head_dim", None) or config.hidden_size // heads
    )
    writer.add_vocab_size(config.vocab_size)


def _add_tokenizer(writer: Any, tokenizer: Any, folder: Path, vocab_size: int) -> None:
    """Vocabulary and token kinds from the tokenizer; merges, special ids, add-bos and the chat
    template through gguf's own reader of the saved folder."""
    import gguf

    by_id = {index: token for token, index in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, kinds = [], []
    for index in range(vocab_size):
        if index in added:
            tokens.append(added[index].content)
            kinds.append(
                gguf.TokenType.CONTROL if added[index].special else gguf.TokenType.USER_DEFINED
            )
        elif index in by_id:
            tokens.append(by_id[index])
            kinds.append(gguf.TokenType.NORMAL)
        else:  # the embedding has more rows than the vocabulary has tokens
            tokens.append(f"[PAD{index}]")
            kinds.append(gguf.TokenType.UNUSED)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer_name(_tokenizer_json(tokenizer)))
    writer.add_token_list(tokens)
    writer.add_token_types(kinds)
    gguf.SpecialVocab(folder, load_merges=True, n_vocab=vocab_size).add_to_gguf(writer, quiet=True)


def _tokenizer_json(tokenizer: Any) -> dict[str, Any]:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise ModelError("GGUF export needs a fast (Rust) tokenizer; set use_fast_tokenizer: true")
    return json.loads(backend.to_str())


def _pre_tokenizer_name(spec: dict[str, Any]) -> str:
    """llama.cpp's name for how this tokenizer splits text before BPE ("default" if unknown:
    llama.cpp then splits like GPT-2 and warns)."""
    pre = spec.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    if steps == [_BYTE_LEVEL]:
        return "gpt-2"
    if steps == [_DIGITS, _BYTE_LEVEL]:
        return "smollm"
    logger.warning(
        "GGUF export: unknown pre-tokenizer; llama.cpp may split text differently "
        "from transformers (tokenizer.ggml.pre = default)"
    )
    return "default"


def _add_tensors(writer: Any, model: Any, quant: str) -> None:
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads = config.num_attention_heads
    kv_heads = config.num_key_value_heads or heads
    for key, tensor in model.state_dict().items():
        if key == "lm_head.weight" and config.tie_word_embeddings:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ModelError(f"GGUF export: no GGUF name for the weight '{key}'")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if name.endswith("attn_q.weight"):
            data = _interleave_rotary(data, heads)
        elif name.endswith("attn_k.weight"):
            data = _interleave_rotary(data, kv_heads)
        array, kind = _encode(data, quant)
        writer.add_tensor(name, array, raw_dtype=kind)


def _interleave_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Per head, [first half | second half] rows -> alternating rows (llama.cpp's layout)."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _encode(data: np.ndarray, quant: str) -> tuple[np.ndarray, Any]:
    import gguf

    kinds = gguf.GGMLQuantizationType
    if data.ndim == 1 or quant == "f32":
        return np.ascontiguousarray(data, dtype=np.float32), kinds.F32
    if quant == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[kinds.Q8_0][0] == 0:
        return gguf.quants.quantize(data, kinds.Q8_0), kinds.Q8_0
    return data.astype(np.float16), kinds.F16
