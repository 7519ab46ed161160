"""``tokenized_path``: the tokenised training data saved once and reused while nothing it was
made from has changed.

A reused folder must be the data this run would make. Its stamp records what went into it:
each data file's size and SHA-256, the registry entries, the tokenizer and chat template,
and every setting that changes tokens (cutoff_len, template, packing, masking, sampling,
the split and its seed). When one differs the folder is refused with the names of what
changed, rather than silently training on stale data; ``overwrite_cache: true`` remakes it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import datasets

from tuneforge.config.schema import RunConfig
from tuneforge.data import files, registry
from tuneforge.data.stats import DataStats, LengthPercentiles
from tuneforge.errors import DataError

logger = logging.getLogger(__name__)

STAMP = "tuneforge_tokenized.json"
# The settings that change what the tokens are.
SETTINGS = (
    "stage",
    "dataset",
    "eval_dataset",
    "template",
    "default_system",
    "cutoff_len",
    "val_size",
    "max_samples",
    "train_on_prompt",
    "mask_history",
    "mix_strategy",
    "interleave_probs",
    "seed",
)


def stamp(cfg: RunConfig, tokenizer: Any, template_source: str | None) -> dict[str, Any]:
    """What the tokenised data is made from: settings, tokenizer, chat template (sft) and
    data files."""
    data = cfg.data
    flat = cfg.flat()
    names = list(dict.fromkeys([*(data.dataset or []), *(data.eval_dataset or [])]))
    sources: dict[str, Any] = {}
    for spec in registry.resolve(names, data.dataset_dir):
        entry: dict[str, Any] = {
            field.name: str(_plain(getattr(spec, field.name)))
            for field in dataclasses.fields(spec)
            if getattr(spec, field.name) not in (None, {})
        }
        if spec.path is not None:
            entry["files"] = {str(f): _digest(f) for f in files.data_files(spec.path)}
        sources[spec.name] = entry
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False)
    return {
        "settings": {key: flat[key] for key in SETTINGS} | {"packing": cfg.packing},
        "tokenizer": {
            "vocabulary": hashlib.sha256(vocab.encode()).hexdigest(),
            "chat_template": hashlib.sha256(str(template_source).encode()).hexdigest(),
        },
        "datasets": sources,
    }


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return f"{path.stat().st_size}:{sha.hexdigest()}"


def cached(
    folder: Path, made_from: dict[str, Any], *, rebuild: bool, make: Callable[[], Any]
) -> tuple[datasets.Dataset, datasets.Dataset | None, DataStats]:
    """The (train, eval, stats) saved in `folder` when they were made from `made_from`;
    otherwise `make()` them and save them there (a changed folder only with `rebuild`)."""
    saved = folder / STAMP
    if saved.is_file() and not rebuild:
        old = json.loads(saved.read_text(encoding="utf-8"))
        changed = _differences(old["made_from"], made_from)
        if changed:
            raise DataError(
                f"tokenized_path {folder}: made from other data or settings ("
                f"{'; '.join(changed)}); set overwrite_cache: true to remake it, or use "
                f"another folder"
            )
        train = datasets.load_from_disk(str(folder / "train"))
        evaluation = (
            datasets.load_from_disk(str(folder / "eval")) if (folder / "eval").is_dir() else None
        )
        logger.info("Data: the tokenised data in %s (tokenized_path), unchanged", folder)
        return train, evaluation, _stats(old["stats"])
    if folder.exists() and not saved.is_file() and any(folder.iterdir()):
        raise DataError(
            f"tokenized_path {folder}: the folder holds files tuneforge did not write; "
            f"name an empty or new folder"
        )
    train, evaluation, stats = make()
    train.save_to_disk(str(folder / "train"))
    if evaluation is not None:
        evaluation.save_to_disk(str(folder / "eval"))
    record = {"made_from": made_from, "stats": _plain(stats)}
    saved.write_text(json.dumps(record, indent=1, ensure_ascii=False), encoding="utf-8")
    logger.info("Data: tokenised data saved to %s (tokenized_path) for later runs", folder)
    return train, evaluation, stats


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed, in words: 'cutoff_len 512 -> 1024', 'data file data/qa.json'."""
    out = []
    settings = old["settings"], new["settings"]
    for key in sorted(set(settings[0]) | set(settings[1])):
        if settings[0].get(key) != settings[1].get(key):
            out.append(f"{key} {settings[0].get(key)} -> {settings[1].get(key)}")
    for part, value in new["tokenizer"].items():
        if old["tokenizer"].get(part) != value:
            out.append(f"the tokenizer's {part.replace('_', ' ')}")
    for name, entry in new["datasets"].items():
        before = old["datasets"].get(name, {})
        data_files = set(before.get("files", {})) | set(entry.get("files", {}))
        out += [
            f"data file {file}"
            for file in sorted(data_files)
            if before.get("files", {}).get(file) != entry.get("files", {}).get(file)
        ]
        if {k: v for k, v in before.items() if k != "files"} != {
            k: v for k, v in entry.items() if k != "files"
        }:
            out.append(f"the {registry.INFO_FILE} entry of {name}")
    return out


def _plain(value: Any) -> Any:
    """Dataclasses and read-only mappings as plain dicts, for JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _stats(saved: dict[str, Any]) -> DataStats:
    return DataStats(**{**saved, "lengths": LengthPercentiles(**saved["lengths"])})
