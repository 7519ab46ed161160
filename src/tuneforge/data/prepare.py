"""The data pipeline in one linear function: registry -> rows -> conversations -> tokens.

`prepare_datasets` is what a training stage calls; reading it top to bottom tells how the
training and validation data are made. Validation data is split off before encoding (no
document lands in both) and is never packed.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from tuneforge.config.schema import RunConfig
from tuneforge.config.val_size import validation_count
from tuneforge.data import files, formats, labelled, preference, registry, streaming, tokenized
from tuneforge.data.encode import EncodeReport, encode_conversations, encode_texts
from tuneforge.data.encode_pairs import PairReport, encode_preferences, joined
from tuneforge.data.mixing import mix
from tuneforge.data.packing import pack
from tuneforge.data.stats import DataStats, LengthPercentiles
from tuneforge.data.streaming import TrainStream
from tuneforge.data.templates import (
    Template,
    get_template,
    template_mismatch,
    tool_template_warning,
)
from tuneforge.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedData:
    """``train`` has input_ids, labels (and position_ids when packed), or streams them
    (``streaming: true``); ``eval`` the same, never packed, or None. ``template`` is None
    for ``pt``."""

    train: datasets.Dataset | TrainStream
    eval: datasets.Dataset | None
    stats: DataStats
    template: Template | None


@dataclass(frozen=True)
class RawSplits:
    """Training and validation rows as read (conversations, texts or labelled texts), before
    encoding; `samples` and `described` say how many rows each dataset gave, in what format."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    samples: dict[str, int]
    described: dict[str, str]


def prepare_datasets(cfg: RunConfig, tokenizer: Any) -> PreparedData:
    data, stage = cfg.data, cfg.finetune.stage
    template = None
    if stage == "sft":
        template = get_template(data.template, tokenizer, data.default_system, data.tool_format)
        logger.info("Rendering with %s", template.label)
        warning = template_mismatch(template, tokenizer)
        if warning:
            logger.warning("%s", warning)

    def make() -> tuple[datasets.Dataset, datasets.Dataset | None, DataStats]:
        splits = read_splits(cfg, template)
        evaluation = splits.eval
        train, report = _encode(splits.train, cfg, tokenizer, template)
        if evaluation is not None:
            evaluation, _ = _encode(evaluation, cfg, tokenizer, template)
        if cfg.packing:
            train = pack(train, data.cutoff_len)
        stats = _stats(cfg, splits.samples, splits.described, report, len(train), evaluation)
        return train, evaluation, stats

    if data.streaming:
        train, evaluation, stats = _prepare_stream(cfg, tokenizer, template)
    elif data.tokenized_path:
        made_from = tokenized.stamp(cfg, tokenizer, template.source if template else None)
        train, evaluation, stats = tokenized.cached(
            Path(data.tokenized_path), made_from, rebuild=data.overwrite_cache, make=make
        )
    else:
        train, evaluation, stats = make()
    logger.info("Data: %s", stats.summary())
    return PreparedData(train=train, eval=evaluation, stats=stats, template=template)


@dataclass(frozen=True)
class LabelledData:
    """Stage ``cls``: ``train``/``eval`` hold input_ids and label ids; `raw` the texts and
    label names of the same split (the TF-IDF baseline trains on them); `names` the classes."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    raw: RawSplits
    names: tuple[str, ...]


def prepare_labelled(cfg: RunConfig, tokenizer: Any) -> LabelledData:
    """Read, split, name the classes (training split only) and tokenise labelled texts."""
    raw = read_splits(cfg, None)
    names = labelled.label_names(cfg.data.label_names, raw.train["label"])
    if raw.eval is not None:
        labelled.check_seen(
            raw.eval["label"],
            raw.train["label"],
            "eval_dataset" if cfg.data.eval_dataset else "the validation split",
        )
    cutoff = cfg.data.cutoff_len
    train = labelled.encode_labelled(raw.train, tokenizer, names, cutoff)
    evaluation = (
        labelled.encode_labelled(raw.eval, tokenizer, names, cutoff)
        if raw.eval is not None
        else None
    )
    truncated = train.truncated + (evaluation.truncated if evaluation else 0)
    logger.info(
        "Data: %s training texts (%s), %s for eval; classes %s; %s truncated to cutoff_len=%d",
        f"{len(train.rows):,}",
        ", ".join(f"{name}: {count:,}" for name, count in raw.samples.items()),
        f"{len(raw.eval) if raw.eval is not None else 0:,}",
        labelled.class_counts(raw.train["label"], names),
        f"{truncated:,}",
        cutoff,
    )
    return LabelledData(train.rows, evaluation.rows if evaluation else None, raw, names)


@dataclass(frozen=True)
class PreferenceData:
    """Stages rm, dpo, kto: ``train``/``eval`` hold prompt_ids with chosen_ids/rejected_ids
    (pairs; whole sequences for rm) or completion_ids and label (kto)."""

    train: datasets.Dataset
    eval: datasets.Dataset | None
    template: Template
    report: PairReport


def prepare_preference(cfg: RunConfig, tokenizer: Any) -> PreferenceData:
    """Read, split and encode preference data with the run's chat template."""
    data, stage = cfg.data, cfg.finetune.stage
    template = get_template(data.template, tokenizer, data.default_system, data.tool_format)
    logger.info("Rendering with %s", template.label)
    raw = read_splits(cfg, template)
    if stage == "kto":
        preference.check_both_marks(raw.train, ", ".join(raw.samples))
    options: dict[str, Any] = {
        "cutoff_len": data.cutoff_len,
        "num_proc": data.preprocessing_num_workers,
        "load_from_cache_file": not data.overwrite_cache,
    }
    train, report = encode_preferences(raw.train, template, **options)
    evaluation = encode_preferences(raw.eval, template, **options)[0] if raw.eval else None
    if stage == "rm":
        train = joined(train)
        evaluation = joined(evaluation) if evaluation is not None else None
    kind = "answers marked good/bad" if stage == "kto" else "pairs"
    logger.info(
        "Data: %s %s (%s), %s for eval; %s cut to cutoff_len=%d (the same prompt cut for "
        "every answer); longest prompt + answer %d tokens",
        f"{report.rows:,}",
        kind,
        ", ".join(
            f"{name}: {count:,} rows, {raw.described[name]}" for name, count in raw.samples.items()
        ),
        f"{len(evaluation) if evaluation is not None else 0:,}",
        f"{report.truncated:,}",
        data.cutoff_len,
        max(report.lengths, default=0),
    )
    return PreferenceData(train, evaluation, template, report)


def read_splits(cfg: RunConfig, template: Template | None, *, answered: bool = True) -> RawSplits:
    """``dataset`` for training, and ``eval_dataset`` or a seeded ``val_size`` share of it
    for validation: the same split for training, `tuneforge eval` and the baseline."""
    data = cfg.data
    specs = _specs(cfg)
    samples: dict[str, int] = {}
    described: dict[str, str] = {}
    train_parts = []
    for name in dict.fromkeys(data.dataset or ()):
        rows, described[name] = read_dataset(specs[name], cfg, template, answered=answered)
        samples[name] = len(rows)
        train_parts.append(rows)
    train = mix(train_parts, data.mix_strategy, data.interleave_probs, cfg.train.seed)
    evaluation = _eval_rows(specs, cfg, template, answered=answered)
    if evaluation is None:
        train, evaluation = _split(train, data.val_size, cfg.train.seed, not data.overwrite_cache)
    return RawSplits(train, evaluation, samples, described)


def _specs(cfg: RunConfig) -> dict[str, registry.DatasetSpec]:
    """The registry entries of ``dataset`` and ``eval_dataset``, by name."""
    data = cfg.data
    if not data.dataset:
        raise ConfigError(
            f"dataset: not set; name one or more datasets registered in "
            f"{data.dataset_dir}/{registry.INFO_FILE}"
        )
    if data.eval_dataset and data.val_size:
        raise ConfigError("val_size and eval_dataset: set one of them, not both")
    names = list(dict.fromkeys([*data.dataset, *(data.eval_dataset or [])]))
    return {spec.name: spec for spec in registry.resolve(names, data.dataset_dir)}


def _eval_rows(
    specs: dict[str, registry.DatasetSpec],
    cfg: RunConfig,
    template: Template | None,
    *,
    answered: bool = True,
) -> datasets.Dataset | None:
    """The rows of ``eval_dataset``, read whole (a stream's too), or None without it."""
    if not cfg.data.eval_dataset:
        return None
    return datasets.concatenate_datasets(
        [
            read_dataset(specs[name], cfg, template, answered=answered)[0]
            for name in dict.fromkeys(cfg.data.eval_dataset)
        ]
    )


def _prepare_stream(
    cfg: RunConfig, tokenizer: Any, template: Template | None
) -> tuple[TrainStream, datasets.Dataset | None, DataStats]:
    """``streaming: true``: the training rows as a stream (see `streaming`), validation rows
    read whole, and statistics of the stream's first `PEEK_ROWS` samples only."""
    data = cfg.data
    if data.preprocessing_num_workers:
        logger.info("preprocessing_num_workers: not used, a stream is tokenised as it is read")
    specs = _specs(cfg)
    described: dict[str, str] = {}
    parts = []
    for name in dict.fromkeys(data.dataset or ()):
        rows, described[name] = streaming.stream_dataset(specs[name], cfg)
        parts.append(rows)
    rows, evaluation = streaming.stream_training_rows(parts, cfg)
    evaluation = _eval_rows(specs, cfg, template) if data.eval_dataset else evaluation
    if evaluation is not None:
        evaluation, _ = _encode(evaluation, cfg, tokenizer, template)
    head = datasets.Dataset.from_list(list(rows.take(streaming.PEEK_ROWS)), features=rows.features)
    encoded, report = _encode(head, cfg, tokenizer, template)
    if cfg.packing:
        encoded = pack(encoded, data.cutoff_len)
    train = TrainStream(
        streaming.encode_stream(rows, cfg, tokenizer, template),
        tuple(len(ids) for ids in encoded["input_ids"]),
    )
    stats = _stats(cfg, dict.fromkeys(described, 0), described, report, len(encoded), evaluation)
    return train, evaluation, dataclasses.replace(stats, sampled=True)


def read_test_rows(cfg: RunConfig) -> datasets.Dataset:
    """Conversations to generate answers for: ``eval_dataset`` (answers optional), else the
    validation split training held out. Read before any model is loaded, to fail fast."""
    data = cfg.data
    if data.eval_dataset:
        specs = registry.resolve(list(dict.fromkeys(data.eval_dataset)), data.dataset_dir)
        return datasets.concatenate_datasets(
            [read_dataset(spec, cfg, None, answered=False)[0] for spec in specs]
        )
    if data.dataset and data.val_size:
        split = read_splits(cfg, None, answered=False).eval
        assert split is not None  # val_size > 0
        return split
    raise ConfigError(
        "no test data: set eval_dataset (a test set registered in "
        f"{data.dataset_dir}/{registry.INFO_FILE}), or dataset with val_size "
        f"to use the validation split training held out"
    )


def read_dataset(
    spec: registry.DatasetSpec, cfg: RunConfig, template: Template | None, *, answered: bool = True
) -> tuple[datasets.Dataset, str]:
    """One registered dataset as conversations (or texts, or labelled texts for ``cls``),
    with max/num_samples applied. ``answered=False`` accepts conversations with no answer."""
    data, stage = cfg.data, cfg.finetune.stage
    _check_kind(spec, stage)
    options: dict[str, Any] = {
        "num_proc": data.preprocessing_num_workers,
        "load_from_cache_file": not data.overwrite_cache,
    }
    remaining = data.max_samples if spec.num_samples is None else None
    parts, description = [], ""
    for where, rows in files.iter_files(spec, cfg.model.cache_dir):
        if remaining is not None:
            rows = rows.select(range(min(remaining, len(rows))))
            remaining -= len(rows)
        if len(rows) and stage == "cls":
            description = "text + label"
            parts.append(labelled.to_labelled(rows, where, spec))
        elif len(rows) and cfg.finetune.preference:
            pref = preference.preference_format(spec, where, rows)
            description = description or pref.describe()
            convert = preference.to_marked if stage == "kto" else preference.to_pairs
            parts.append(convert(rows, where, pref))
        elif len(rows):
            fmt = formats.resolve_format(spec, where, rows, stage, answered)
            description = description or fmt.describe()
            parts.append(formats.to_conversations(rows, where, fmt, answered=answered, **options))
        if remaining == 0:
            break
    if not parts:
        raise DataError(f"dataset '{spec.name}': has no rows")
    rows = datasets.concatenate_datasets(parts)
    if spec.num_samples is not None:
        rows = _sample(rows, spec.num_samples, cfg.train.seed)
        if data.max_samples is not None:
            rows = rows.select(range(min(data.max_samples, len(rows))))
    if template is not None and any(tools is not None for tools in rows["tools"]):
        warning = tool_template_warning(template)
        if warning:
            logger.warning("dataset '%s': %s", spec.name, warning)
    return rows, description


def _check_kind(spec: registry.DatasetSpec, stage: str) -> None:
    """Preference data trains the preference stages, and only them."""
    if spec.ranking and stage in ("sft", "pt", "cls"):
        raise DataError(
            f"dataset '{spec.name}': is preference data (ranking: true), which stage {stage} "
            f"cannot use; use it with stage dpo, kto or rm"
        )
    if not spec.ranking and stage in ("rm", "dpo"):
        raise DataError(
            f"dataset '{spec.name}': stage {stage} needs preference pairs; register it with "
            f'"ranking": true and its chosen/rejected columns in {registry.INFO_FILE}'
        )


def _sample(rows: datasets.Dataset, count: int, seed: int) -> datasets.Dataset:
    """``num_samples``: a seeded random subset; more than there are repeats rows at random."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows))[:count]
    if count > len(rows):
        order = np.concatenate([order, rng.choice(len(rows), count - len(rows))])
    return rows.select(order.tolist())


def _split(
    rows: datasets.Dataset, val_size: float, seed: int, load_from_cache_file: bool
) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    if not val_size:
        return rows, None
    count = validation_count(val_size, len(rows))
    if not 0 < count < len(rows):
        raise ConfigError(
            f"val_size: {val_size} gives {count} validation samples out of "
            f"{len(rows)}; both splits need at least one sample"
        )
    parts = rows.train_test_split(
        test_size=count, seed=seed, load_from_cache_file=load_from_cache_file
    )
    return parts["train"], parts["test"]


def _encode(
    rows: datasets.Dataset, cfg: RunConfig, tokenizer: Any, template: Template | None
) -> tuple[datasets.Dataset, EncodeReport]:
    data = cfg.data
    options: dict[str, Any] = {
        "cutoff_len": data.cutoff_len,
        "num_proc": data.preprocessing_num_workers,
        "load_from_cache_file": not data.overwrite_cache,
    }
    if template is None:
        return encode_texts(rows, tokenizer, **options)
    return encode_conversations(
        rows,
        template,
        train_on_prompt=data.train_on_prompt,
        mask_history=data.mask_history,
        **options,
    )


def _stats(
    cfg: RunConfig,
    samples: dict[str, int],
    described: dict[str, str],
    report: EncodeReport,
    rows: int,
    evaluation: datasets.Dataset | None,
) -> DataStats:
    return DataStats(
        stage=cfg.finetune.stage,
        cutoff_len=cfg.data.cutoff_len,
        samples=samples,
        formats=described,
        train_samples=report.samples,
        eval_samples=len(evaluation) if evaluation is not None else 0,
        truncated=report.truncated,
        dropped=report.dropped,
        total_tokens=report.tokens,
        trained_tokens=report.trained_tokens,
        lengths=LengthPercentiles.of(report.lengths),
        rows=rows,
        packed=cfg.packing,
    )
