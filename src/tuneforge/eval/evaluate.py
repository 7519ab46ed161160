"""`tuneforge eval` and `tuneforge predict`: did fine-tuning work, and what does it say?

With an adapter (or a full/freeze output folder) `evaluate` scores the tuned model and the
model it started from on the same samples, rendered the same way, so the difference is the
fine-tuning and nothing else. The model, template and stage come from the folder's saved
config (what was trained); the test data, generation and metric settings from the user's.
A classifier is compared with a TF-IDF baseline instead of its untrained start, whose head is
random. Test rows that carry tools (function-call data) are scored as calls (`toolcalls`)
rather than as text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tuneforge.config.load import replace
from tuneforge.config.schema import RunConfig
from tuneforge.data import files
from tuneforge.data.prepare import prepare_labelled, read_test_rows
from tuneforge.errors import ConfigError, DataError, ModelError
from tuneforge.eval import metrics as m
from tuneforge.eval.baseline import score_baseline
from tuneforge.eval.classify import Classifier, load_classifier, prediction_lines
from tuneforge.eval.generate import answer_with_each, eval_samples
from tuneforge.eval.preference import evaluate_preference, score_answers
from tuneforge.eval.report import confusion_table, most_different, side_by_side
from tuneforge.eval.toolcalls import carries_tools, evaluate_tool_calls
from tuneforge.infer.resolve import ResolvedModel, resolve_model
from tuneforge.layout import CONFIG_NAME
from tuneforge.models import resolve_model_path

logger = logging.getLogger(__name__)

METRICS_NAME = "metrics.json"
CLASS_PREDICTIONS_NAME = "predictions.jsonl"


@dataclass(frozen=True)
class EvalReport:
    """What `evaluate` found: the metrics.json content, a printable report and where the
    files are."""

    output_dir: Path
    metrics: dict[str, Any]
    text: str
    files: list[Path] = field(default_factory=list)


def evaluate(
    cfg: RunConfig,
    adapter: str | None = None,
    output_dir: str | Path | None = None,
    reward_model: str | None = None,
) -> EvalReport:
    """Score the tuned model (and its base, or the TF-IDF baseline) on the test data;
    preference runs on held-out pairs (`reward_model` scores their answers too); test data
    with tools on its calls."""
    adapter = adapter or cfg.model.adapter_name_or_path
    tuned, base = compared_models(cfg, adapter)
    out = Path(output_dir) if output_dir else Path(adapter or cfg.train.output_dir) / "eval"
    stage = tuned.config.finetune.stage
    if stage == "cls":
        return evaluate_classifier(tuned, out)
    if tuned.config.finetune.preference:
        return _finish(out, *evaluate_preference(tuned, base, out, reward_model))
    if stage != "sft":
        raise ConfigError(
            f"stage {stage}: tuneforge eval scores answers (sft) or labels (cls); a pt model "
            f"has neither"
        )
    rows = read_test_rows(tuned.config)
    if carries_tools(rows):
        return _finish(out, *evaluate_tool_calls(tuned, base, rows, out))
    return evaluate_generation(tuned, base, out, rows)


def compared_models(
    cfg: RunConfig, adapter: str | None
) -> tuple[ResolvedModel, ResolvedModel | None]:
    """(tuned, base): the user's config with the model, template, stage and labels the
    folder was trained with, what to load for the tuned model, and the model it started from
    (a plain model folder names none: it is compared with the config's model)."""
    if adapter is None:
        return resolve_model(None, cfg), None
    trained = resolve_model(adapter)
    own_base = trained.adapter is None and trained.weights == trained.base
    origin = cfg.model if own_base else trained.config.model
    if "model_name_or_path" in cfg.model.model_fields_set and (
        resolve_model_path(cfg.model) != resolve_model_path(origin)
    ):
        raise ModelError(
            f"{adapter} was trained on '{origin.model_name_or_path}', but the "
            f"config names model '{cfg.model.model_name_or_path}'; remove "
            f"model_name_or_path from the config or use an adapter of that model"
        )
    stage = trained.config.finetune.stage
    if stage != cfg.finetune.stage:
        raise ConfigError(
            f"{adapter} was trained with stage {stage}, but the config has stage "
            f"{cfg.finetune.stage}; evaluate it with a stage {stage} config "
            f"(e.g. its own {CONFIG_NAME})"
        )
    data = trained.config.data
    config = replace(
        cfg,
        **origin.model_dump(mode="json"),
        **trained.config.finetune.model_dump(mode="json"),
        template=data.template,
        default_system=data.default_system,
        label_names=data.label_names,
    )
    tuned = ResolvedModel(config, trained.weights, trained.adapter)
    return tuned, tuned.base_model()


def evaluate_generation(
    tuned: ResolvedModel, base: ResolvedModel | None, out: Path, rows: Any = None
) -> EvalReport:
    """Generate answers with the tuned (and base) model; BLEU/ROUGE/exact match per model.
    `rows` are the test rows when already read."""
    m.require(m.GENERATION_PACKAGES, "tuneforge eval (BLEU/ROUGE)")
    cfg = tuned.config
    gen, batch = cfg.generation, cfg.train.per_device_eval_batch_size
    samples = eval_samples(read_test_rows(cfg) if rows is None else rows)
    scored = [i for i, s in enumerate(samples) if s.reference]
    references = [samples[i].reference or "" for i in scored]
    tokenize = cfg.eval.metric_tokenize
    if any(m.resolve_tokenize(tokenize, [reference]) == "jieba" for reference in references):
        m.require(m.CHINESE_PACKAGES, "Chinese BLEU/ROUGE")
    logger.info("Generating %d answers, batch %d, with %s", len(samples), batch, gen.to_kwargs())
    answers = answer_with_each(tuned, base, samples, gen, batch, out)
    predictions, written = answers.texts, answers.files
    result: dict[str, Any] = {
        "samples": len(samples),
        "scored": len(scored),
        "generation": gen.to_kwargs(),
    }
    if not scored:
        text = (
            f"No reference answers in the test data: {len(samples)} predictions written "
            f"to {written[0]}; metrics skipped."
        )
        logger.warning("%s", text)
        return _finish(out, result, text, written)
    scores = {
        name: m.score_generation([answers[i] for i in scored], references, tokenize)
        for name, answers in predictions.items()
    }
    result.update({name: s.metrics for name, s in scores.items()})
    result["metric_tokenize"] = split = next(iter(scores.values())).tokenize
    note = (
        ""
        if len(scored) == len(samples)
        else (f" ({len(samples) - len(scored)} samples without a reference not scored)")
    )
    header = f"{len(scored)} samples, text split by {split}{note}"
    if base is None:
        table = "\n".join(f"{k:<20} {v:.4f}" for k, v in scores["model"].metrics.items())
        return _finish(out, result, f"{header}\n{table}", written)
    table = side_by_side("base", scores["base"].metrics, "tuned", scores["tuned"].metrics)
    rows = most_different(
        [samples[i] for i in scored],
        [predictions["base"][i] for i in scored],
        [predictions["tuned"][i] for i in scored],
        scores["base"].per_sample,
        scores["tuned"].per_sample,
    )
    return _finish(out, result, f"{header}\n{table}\n\nWhere they differ most:\n{rows}", written)


def evaluate_classifier(tuned: ResolvedModel, out: Path) -> EvalReport:
    """Label the validation split with the classifier and with a TF-IDF baseline fitted on
    the training split; accuracy, macro-F1, per class, confusion matrix."""
    m.require(m.CLASSIFICATION_PACKAGES, "tuneforge eval (classification)")
    cfg = tuned.config
    classifier = _load_classifier(tuned)
    data = prepare_labelled(cfg, classifier.tokenizer)
    if data.raw.eval is None or data.eval is None:
        raise ConfigError(
            "no validation data to score: set val_size (the split training used) or eval_dataset"
        )
    names = classifier.names
    texts, truth = data.raw.eval["text"], list(data.eval["labels"])
    probabilities = classifier.probabilities(texts, cfg.train.per_device_eval_batch_size)
    guess = probabilities.argmax(-1).tolist()
    model = m.classification_metrics(truth, guess, names)
    result: dict[str, Any] = {
        "samples": len(texts),
        "labels": list(names),
        "model": model,
        "confusion_matrix": m.confusion(truth, guess, len(names)),
    }
    parts = []
    baseline = score_baseline(data) if cfg.eval.tfidf_baseline else None
    if baseline is not None:
        result["baseline"] = baseline
        parts.append(side_by_side("tfidf", baseline, "model", model))
    else:
        parts.append("\n".join(f"{k:<20} {v:.4f}" for k, v in model.items()))
    parts.append(confusion_table(result["confusion_matrix"], names))
    written = out / CLASS_PREDICTIONS_NAME
    out.mkdir(parents=True, exist_ok=True)
    written.write_text(
        "\n".join(prediction_lines(texts, probabilities, names)) + "\n", encoding="utf-8"
    )
    return _finish(out, result, f"{len(texts)} validation texts\n" + "\n\n".join(parts), [written])


def predict(
    cfg: RunConfig,
    adapter: str,
    input_path: str | Path,
    output_path: str | Path,
    text_column: str = "text",
) -> Path:
    """Label every text of a file (JSON, JSONL, CSV, Parquet or one text per line) with the
    classifier in `adapter` and write ``{text, label, probabilities}`` lines; with a reward
    model (stage rm), score every answered conversation of the file instead."""
    tuned = compared_models(cfg, adapter)[0]
    if tuned.config.finetune.stage == "rm":
        return score_answers(tuned, Path(input_path), Path(output_path))
    classifier = _load_classifier(tuned)
    texts = read_texts(Path(input_path), text_column, cfg.model.cache_dir)
    probabilities = classifier.probabilities(texts, cfg.train.per_device_eval_batch_size)
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        "\n".join(prediction_lines(texts, probabilities, classifier.names)) + "\n", encoding="utf-8"
    )
    counts = np.bincount(probabilities.argmax(-1), minlength=len(classifier.names))
    logger.info(
        "%d texts labelled (%s) -> %s",
        len(texts),
        ", ".join(f"{n}: {c}" for n, c in zip(classifier.names, counts, strict=True)),
        out,
    )
    return out


def _load_classifier(model: ResolvedModel) -> Classifier:
    """`load_classifier` reads what to load from a config's model section: give it the
    resolved weights and adapter there (a copy for loading; the model's config is unchanged)."""
    return load_classifier(model.config.model_copy(update={"model": model.load_args()}))


def read_texts(path: Path, column: str, cache_dir: str | None) -> list[str]:
    """The `column` of a data file (``text`` for plain-text files), every row non-empty."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    rows = files.load_file(files.data_files(path)[0], cache_dir)
    if column not in rows.column_names:
        raise DataError(
            f"{path}: no column '{column}'; the file has: "
            f"{', '.join(rows.column_names)} (choose one with --column)"
        )
    texts = list(rows[column])
    empty = [
        number
        for number, text in enumerate(texts, start=1)
        if not isinstance(text, str) or not text.strip()
    ]
    if empty:
        raise DataError(
            f"{path}: row {empty[0]}: empty text in '{column}'"
            + (f" (and {len(empty) - 1} more rows)" if len(empty) > 1 else "")
        )
    return texts


def _finish(out: Path, result: dict[str, Any], text: str, written: Sequence[Path]) -> EvalReport:
    out.mkdir(parents=True, exist_ok=True)
    (out / METRICS_NAME).write_text(
        json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return EvalReport(out, result, text, [*written, out / METRICS_NAME])
