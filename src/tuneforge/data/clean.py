"""``tuneforge data clean``: a cleaned copy of the configured datasets, and what was dropped.

The input files are never written: the copy goes to ``--out`` (refused when it is one of the
inputs) through a temporary file renamed into place, and every dropped sample is listed with
its file, row and reason in ``<out>.dropped.jsonl``. The copy is JSON lines in the form
tuneforge reads back unchanged: OpenAI-style ``messages`` for sft, ``text`` for pt and
``text`` + ``label`` for cls, whatever format the inputs had.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from tuneforge.config.schema import RunConfig
from tuneforge.data import registry
from tuneforge.data.duplicates import sample_key
from tuneforge.data.files import data_files
from tuneforge.data.formats import DEFAULT_TAGS
from tuneforge.data.lengths import token_lengths
from tuneforge.data.samples import Sample, read_samples
from tuneforge.data.templates import get_template
from tuneforge.errors import DataError

Dedupe = Literal["normalized", "exact", "none"]

# Conversation roles -> the OpenAI-style role names the openai format reads back.
OPENAI_ROLES = {
    "system": DEFAULT_TAGS["openai"]["system_tag"],
    "user": DEFAULT_TAGS["openai"]["user_tag"],
    "assistant": DEFAULT_TAGS["openai"]["assistant_tag"],
    "observation": DEFAULT_TAGS["openai"]["observation_tag"],
    "function": DEFAULT_TAGS["openai"]["function_tag"],
}


@dataclass(frozen=True)
class CleanReport:
    """Where the copy and the list of dropped samples went, and the counts behind them."""

    out: Path
    dropped_list: Path
    kept: dict[str, int]
    dropped: dict[str, Counter[str]]
    entry: dict[str, Any]

    def text(self) -> str:
        lines = []
        for name, kept in self.kept.items():
            reasons = (
                ", ".join(
                    f"{count:,} {reason}" for reason, count in self.dropped[name].most_common()
                )
                or "none"
            )
            dropped = sum(self.dropped[name].values())
            lines.append(f"dataset '{name}': kept {kept:,}, dropped {dropped:,} ({reasons})")
        lines.append(
            f"Wrote {sum(self.kept.values()):,} samples to {self.out}; dropped samples "
            f"and why: {self.dropped_list}"
        )
        lines.append(
            f"To train on it, register it in dataset_info.json: "
            f"{json.dumps({self.out.stem: self.entry})}"
        )
        return "\n".join(lines)


def normalize_whitespace(text: str) -> str:
    """Line endings unified, trailing spaces and runs of blank lines removed, ends stripped;
    indentation is kept (code samples need it)."""
    lines = [
        line.rstrip()
        for line in text.replace("\r\n", "\n")
        .replace("\r", "\n")
        .replace("\u00a0", " ")
        .split("\n")
    ]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def clean_datasets(
    cfg: RunConfig,
    tokenizer: Any,
    out: str | Path,
    *,
    dedupe: Dedupe = "normalized",
    min_tokens: int | None = None,
    max_tokens: int | None = None,
) -> CleanReport:
    """Write the configured training datasets, cleaned, to `out` (see the module docstring)."""
    out = Path(out)
    _check_out(cfg, out)
    samples = [_tidy(sample) for sample in read_samples(cfg)]
    lengths = _total_tokens(cfg, tokenizer, samples) if min_tokens or max_tokens else {}
    kept: list[Sample] = []
    dropped: list[tuple[Sample, str]] = []
    seen: dict[str, Sample] = {}
    for sample in samples:
        reason = _drop_reason(sample, lengths.get(id(sample)), min_tokens, max_tokens)
        if reason is None and dedupe != "none":
            key = sample_key(sample, normalized=dedupe == "normalized")
            first = seen.setdefault(key, sample)
            if first is not sample:
                reason = f"duplicate of {first.location}"
        if reason is None:
            kept.append(sample)
        else:
            dropped.append((sample, reason))
    names = list(dict.fromkeys(sample.dataset for sample in samples))
    counts = {name: sum(1 for sample in kept if sample.dataset == name) for name in names}
    why = {
        name: Counter(_reason_kind(reason) for sample, reason in dropped if sample.dataset == name)
        for name in names
    }
    for name in names:
        if not counts[name]:
            reasons = ", ".join(f"{count:,} {kind}" for kind, count in why[name].most_common())
            raise DataError(
                f"dataset '{name}': every sample was dropped by cleaning ({reasons}); "
                f"nothing would be left to train on"
            )
    dropped_list = out.with_name(out.stem + ".dropped.jsonl")
    _write_lines(out, (_row(sample, cfg.finetune.stage) for sample in kept))
    _write_lines(
        dropped_list,
        (
            {"dataset": sample.dataset, "file": sample.where, "row": sample.row, "reason": reason}
            for sample, reason in dropped
        ),
    )
    return CleanReport(
        out, dropped_list, counts, why, _entry(out, cfg.data.dataset_dir, cfg.finetune.stage)
    )


def _check_out(cfg: RunConfig, out: Path) -> None:
    """Refuse an output path that is one of the input files (or the registry itself)."""
    data = cfg.data
    inputs = {(Path(data.dataset_dir) / registry.INFO_FILE).resolve()}
    for spec in registry.resolve(list(dict.fromkeys(data.dataset or [])), data.dataset_dir):
        if spec.path is not None:
            inputs.update(path.resolve() for path in data_files(spec.path))
    if out.resolve() in inputs:
        raise DataError(
            f"--out {out}: is one of the input files; clean never changes its "
            f"input, choose another path"
        )
    if out.suffix.lower() != ".jsonl":
        raise DataError(
            f"--out {out}: the cleaned copy is JSON lines; give a path ending in .jsonl"
        )
    if out.is_dir():
        raise DataError(f"--out {out}: is a folder; give a file path ending in .jsonl")


def _tidy(sample: Sample) -> Sample:
    """The sample with whitespace normalised; rows made empty by it become unusable."""
    if sample.problem:
        return sample
    if sample.text is not None:
        text = normalize_whitespace(sample.text)
        return replace(sample, text=text, problem=None if text else "empty text")
    messages = tuple(
        {"role": m["role"], "content": normalize_whitespace(m["content"])} for m in sample.messages
    )
    empty = next((m["role"] for m in messages if not m["content"] and m["role"] != "system"), None)
    return replace(
        sample,
        messages=messages,  # type: ignore[arg-type]
        problem=f"empty {empty} message" if empty else None,
    )


def _total_tokens(cfg: RunConfig, tokenizer: Any, samples: list[Sample]) -> dict[int, int]:
    """Tokens per usable sample (by id), as training encodes it."""
    usable = [sample for sample in samples if not sample.problem]
    template = (
        get_template(cfg.data.template, tokenizer, cfg.data.default_system, cfg.data.tool_format)
        if cfg.finetune.stage == "sft"
        else None
    )
    totals = token_lengths(
        usable, template, tokenizer, add_eos=cfg.finetune.stage == "pt"
    ).total.values
    return {id(sample): total for sample, total in zip(usable, totals, strict=True)}


def _drop_reason(
    sample: Sample, length: int | None, min_tokens: int | None, max_tokens: int | None
) -> str | None:
    if sample.problem:
        return f"unusable: {sample.problem}"
    if length is not None and min_tokens is not None and length < min_tokens:
        return f"too short: {length} tokens < --min-tokens {min_tokens}"
    if length is not None and max_tokens is not None and length > max_tokens:
        return f"too long: {length} tokens > --max-tokens {max_tokens}"
    return None


def _reason_kind(reason: str) -> str:
    """The reason without its details: 'duplicate', 'too long', 'unusable' ..."""
    kind = reason.split(":")[0].removesuffix(" of")
    return "duplicates" if kind.startswith("duplicate") else kind


def _row(sample: Sample, stage: str) -> dict[str, Any]:
    if stage == "cls":
        return {"text": sample.text, "label": sample.label}
    if stage == "pt":
        return {"text": sample.text}
    row: dict[str, Any] = {
        "messages": [
            {"role": OPENAI_ROLES[m["role"]], "content": m["content"]} for m in sample.messages
        ]
    }
    if sample.tools:
        row["tools"] = sample.tools
    return row


def _entry(out: Path, dataset_dir: str, stage: str) -> dict[str, Any]:
    """The dataset_info.json entry (in `dataset_dir`) that reads the copy back."""
    entry: dict[str, Any] = {"file_name": os.path.relpath(out, dataset_dir)}
    if stage == "sft":
        entry["formatting"] = "openai"
    return entry


def _write_lines(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """JSON lines written to a temporary file beside `path`, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            for row in rows:
                file.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
