"""``tuneforge export``: merge, save, convert, then check the result against the original.

Everything is written into a hidden folder beside the destination and moved into place only
after it was written completely, so a failed export never leaves a half-written model where
a good one is expected. The checks reload what was written (the folder with transformers, the
GGUF with transformers' ``gguf_file=`` loader and, where llama-cpp-python is installed, with
llama.cpp itself) and compare its next-token predictions with the unmerged base + adapter.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import torch

from tuneforge.data import Template
from tuneforge.errors import ConfigError, OutputError
from tuneforge.exporting import llamacpp
from tuneforge.exporting import merge as merging
from tuneforge.exporting.gguf import QUANTS as WRITTEN_QUANTS
from tuneforge.exporting.gguf import check_supported, write_gguf, write_modelfile
from tuneforge.exporting.verify import (
    Check,
    compare_predictions,
    compare_prompt_ids,
    compare_tokenization,
    logits_at_every_position,
    probe_prompts,
)
from tuneforge.infer.resolve import ResolvedModel
from tuneforge.models import load_tokenizer, resolve_model_path

logger = logging.getLogger(__name__)

FORMATS = ("hf", "gguf")
# tuneforge's own GGUF weight types, then llama.cpp's k-quants (the gguf-quant extra).
QUANTS = (*WRITTEN_QUANTS, *llamacpp.LLAMA_CPP_QUANTS)
# Share of next-token predictions that must agree: exact formats, and rounded ones.
EXACT, ROUNDED = 0.99, 0.9
# Per GGUF weight type. The k-quants round more; on the default model, whose 576-wide rows
# are not a multiple of 256, most tensors fall back to 32-value q5_0/q5_1 blocks (measured,
# 202 positions, transformers / llama.cpp: q5_k_m 0.83 / 0.86, q4_k_m 0.90 / 0.92;
# docs/benchmarks.md). A misread file (tokenizer, q/k layout) agrees on few positions.
AGREEMENT = MappingProxyType(
    {"f32": EXACT, "f16": ROUNDED, "q8_0": ROUNDED, "q5_k_m": 0.8, "q4_k_m": 0.8}
)
# llama.cpp also rounds the activations to 8 bits in a q8_0 matrix product, so it agrees less
# than transformers' reading of the same file (default model + a random LoRA: 89.6% vs 93.6%).
LLAMA_CPP_AGREEMENT = MappingProxyType({**AGREEMENT, "q8_0": 0.85})


@dataclass(frozen=True)
class ExportResult:
    path: Path
    checks: list[Check] = field(default_factory=list)
    modelfile: Path | None = None

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)


def export_model(
    model: ResolvedModel,
    out: str | Path,
    *,
    fmt: str | None = None,
    quant: str | None = None,
    overwrite: bool = False,
    max_shard_size: int | str | None = None,
    legacy_format: bool = False,
    device: str = "cpu",
) -> ExportResult:
    """Merge the model's adapter into its weights and write `out` as a Hugging Face folder
    (``fmt="hf"``: weight shards of at most `max_shard_size` bytes, safetensors or, with
    `legacy_format`, .bin) or a GGUF file (``fmt="gguf"``, ``quant`` f32, f16, q8_0, or with
    llama-cpp-python q5_k_m, q4_k_m; default f16). The format defaults to gguf when `out`
    ends in .gguf. `device` "auto" merges on a CUDA GPU when there is one."""
    out = Path(out)
    fmt = fmt or ("gguf" if out.suffix == ".gguf" else "hf")
    _check_request(model, out, fmt, quant, overwrite, max_shard_size is not None or legacy_format)
    if fmt == "gguf":
        from transformers import AutoConfig

        args = model.load_args()
        check_supported(AutoConfig.from_pretrained(resolve_model_path(args)), load_tokenizer(args))
    chat = merging.load_unmerged(model, device)
    # The config's template (a YAML's template: chatml) travels in the tokenizer, as training
    # saves it, so the export renders prompts as chat did.
    chat.tokenizer.chat_template = chat.template.source
    prompts = probe_prompts(chat.template)
    reference = logits_at_every_position(chat.model, prompts)
    merged = merging.merge(chat.model)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tuneforge-export-", dir=out.parent))
    try:
        folder = staging / "model"
        merging.save_merged(
            merged,
            chat.tokenizer,
            model,
            folder,
            max_shard_size=max_shard_size,
            legacy_format=legacy_format,
        )
        exact = merging.stored_dtype(model) == torch.float32
        checks = _check_folder(folder, chat.template, prompts, reference, exact)
        if fmt == "hf":
            _place(folder, out)
            return ExportResult(out, checks)
        quant = quant or "f16"
        written = staging / out.name
        if quant in llamacpp.LLAMA_CPP_QUANTS:
            # llama.cpp quantises from f32, so the weights are rounded once, to the final type.
            unquantised = staging / "f32.gguf"
            write_gguf(merged, chat.tokenizer, folder, unquantised, "f32", name=out.stem)
            llamacpp.quantize(unquantised, written, quant)
            unquantised.unlink()
        else:
            write_gguf(merged, chat.tokenizer, folder, written, quant, name=out.stem)
        checks += _check_gguf(written, chat.template, prompts, reference, quant)
        _place(written, out)
        modelfile = write_modelfile(out, chat.template, model.config.generation)
        return ExportResult(out, checks, modelfile)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _check_request(
    model: ResolvedModel,
    out: Path,
    fmt: str,
    quant: str | None,
    overwrite: bool,
    folder_options: bool = False,
) -> None:
    """Every problem with the format, quantisation, folder options (shards, legacy format)
    and destination, before anything loads."""
    problems = []
    if fmt not in FORMATS:
        problems.append(f"--format {fmt}: allowed: {', '.join(FORMATS)}")
    if quant is not None and quant not in QUANTS:
        problems.append(f"--quant {quant}: allowed: {', '.join(QUANTS)}")
    elif quant in llamacpp.LLAMA_CPP_QUANTS and not llamacpp.available():
        problems.append(llamacpp.missing(quant))
    if fmt == "hf" and quant is not None:
        problems.append(
            "--quant applies to --format gguf; a Hugging Face folder keeps the base model's dtype"
        )
    if fmt == "gguf" and folder_options:
        problems.append(
            "export_size and export_legacy_format apply to a Hugging Face folder; a GGUF "
            "export is one .gguf file; remove them or export a folder"
        )
    if fmt == "gguf" and out.suffix != ".gguf":
        problems.append(f"--out {out}: a GGUF export is one file; give a path ending in .gguf")
    if fmt == "hf" and out.suffix == ".gguf":
        problems.append(
            f"--out {out}: --format hf writes a folder; drop the .gguf ending or use --format gguf"
        )
    if problems:
        raise ConfigError(*problems)
    sources = [model.adapter, model.weights]
    if any(source and Path(source).resolve() == out.resolve() for source in sources):
        raise OutputError(f"--out {out}: is the model being exported; choose another path")
    if out.exists() and not overwrite:
        raise OutputError(
            f"--out {out}: already exists; add --overwrite to replace it, or choose another path"
        )


def _check_folder(
    folder: Path,
    template: Template,
    prompts: list[list[int]],
    reference: list[torch.Tensor],
    exact: bool,
) -> list[Check]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    candidate = logits_at_every_position(reloaded, prompts)
    return [
        compare_predictions(
            "merged folder vs base+adapter",
            reference,
            candidate,
            required=EXACT if exact else ROUNDED,
        ),
        compare_tokenization(
            "merged folder tokenizer", template, AutoTokenizer.from_pretrained(folder)
        ),
    ]


def _check_gguf(
    path: Path,
    template: Template,
    prompts: list[list[int]],
    reference: list[torch.Tensor],
    quant: str,
) -> list[Check]:
    """transformers' reading of the file, and llama.cpp's where llama-cpp-python is installed."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    reloaded = AutoModelForCausalLM.from_pretrained(**where, dtype=torch.float32)
    candidate = logits_at_every_position(reloaded, prompts)
    checks = [
        compare_predictions(
            "GGUF vs base+adapter", reference, candidate, required=AGREEMENT[quant]
        ),
        compare_tokenization("GGUF tokenizer", template, AutoTokenizer.from_pretrained(**where)),
    ]
    if not llamacpp.available():
        logger.info("llama-cpp-python is not installed: the GGUF is checked with transformers only")
        return checks
    llm = llamacpp.load(path, n_ctx=max(512, *map(len, prompts)), logits_all=True)
    try:
        ran = llamacpp.logits_at_every_position(llm, prompts)
        checks += [
            compare_predictions(
                "llama.cpp vs base+adapter", reference, ran, required=LLAMA_CPP_AGREEMENT[quant]
            ),
            compare_prompt_ids(
                "llama.cpp tokenizer", template, lambda text: llamacpp.tokenize(llm, text)
            ),
        ]
    finally:
        llm.close()
    return checks


def _place(written: Path, out: Path) -> None:
    """Move the finished export to `out`, replacing what was there (the caller checked that
    replacing was asked for)."""
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    elif out.exists() or out.is_symlink():
        out.unlink()
    os.replace(written, out)
    logger.info("export written to %s", out)
