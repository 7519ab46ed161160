"""llama.cpp's own quantiser and runtime, through llama-cpp-python (the ``gguf-quant`` extra).

tuneforge writes f32, f16 and q8_0 GGUF itself (`gguf.py`). The k-quants (q5_k_m, q4_k_m)
choose a block type per tensor by llama.cpp's rules (more bits for attention V and FFN down, a
32-block fallback for rows not a multiple of 256), which only llama.cpp implements, so they are
made by llama.cpp from tuneforge's f32 file. The same library then runs every GGUF export, so
the file is checked by the program that will serve it, not only by transformers' reader.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from tuneforge.errors import ModelError

logger = logging.getLogger(__name__)

# --quant -> the name of llama.cpp's file type in llama_cpp.
LLAMA_CPP_QUANTS = {"q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M", "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
EXTRA = "gguf-quant"


def available() -> bool:
    """Whether llama-cpp-python is installed (found without loading its library)."""
    return importlib.util.find_spec("llama_cpp") is not None


def missing(quant: str) -> str:
    return (
        f"--quant {quant}: is made by llama.cpp's quantiser; pip install 'tuneforge[{EXTRA}]' "
        f"(it compiles llama.cpp: 10-30 minutes), or use f32, f16 or q8_0"
    )


def quantize(source: Path, dest: Path, quant: str) -> None:
    """Quantise the f32/f16 GGUF `source` to `dest` with llama.cpp, as ``llama-quantize``
    would with its default settings, and log the sizes and the block types it chose."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_CPP_QUANTS[quant])
    llama_cpp.llama_backend_init()
    with _llama_cpp_log() as log:
        status = llama_cpp.llama_model_quantize(
            str(source).encode(), str(dest).encode(), ctypes.byref(params)
        )
    if status != 0 or not dest.is_file():
        said = " ".join("".join(log).split())[-400:]
        raise ModelError(f"llama.cpp could not quantise {source.name} to {quant}: {said}")
    fallbacks = "".join(log).count("falling back")
    logger.info(
        "llama.cpp %s: %s -> %s; tensors: %s%s",
        quant,
        _megabytes(source),
        _megabytes(dest),
        ", ".join(f"{kind} {count}" for kind, count in tensor_types(dest).most_common()),
        f" ({fallbacks} with rows not a multiple of 256 in a 32-block type)" if fallbacks else "",
    )


def tensor_types(path: Path) -> Counter[str]:
    """How many tensors of each block type (F32, Q8_0, Q4_K, ...) the GGUF file holds."""
    from gguf import GGUFReader

    return Counter(tensor.tensor_type.name for tensor in GGUFReader(path).tensors)


def load(path: Path, n_ctx: int = 512, *, logits_all: bool = False) -> Any:
    """The GGUF file as llama.cpp runs it (quiet: llama.cpp's log goes to stderr otherwise)."""
    from llama_cpp import Llama

    return Llama(model_path=str(path), n_ctx=n_ctx, logits_all=logits_all, verbose=False)


def logits_at_every_position(llm: Any, prompts: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """float32 logits (positions x vocabulary) llama.cpp computes for each prompt (`llm`
    loaded with ``logits_all=True`` and a context as long as the longest prompt)."""
    out = []
    for ids in prompts:
        llm.reset()
        llm.eval(list(ids))
        out.append(torch.from_numpy(llm.scores[: len(ids)].copy()))
    return out


def tokenize(llm: Any, text: str) -> list[int]:
    """llama.cpp's token ids for a rendered prompt: special tokens (<|im_start|>) parsed, no
    BOS added (the chat template writes what the model needs)."""
    return list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


@contextmanager
def _llama_cpp_log() -> Iterator[list[str]]:
    """llama.cpp's log (a line per tensor while quantising) collected instead of printed;
    llama-cpp-python's own printer is put back afterwards."""
    import llama_cpp
    from llama_cpp import _logger

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def collect(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        lines.append(text.decode("utf-8", errors="replace"))

    llama_cpp.llama_log_set(collect, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def _megabytes(path: Path) -> str:
    return f"{path.stat().st_size / 1e6:.1f} MB"
