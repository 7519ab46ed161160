"""A trained classifier at work: batched label probabilities, and metrics while training.

Inference is one forward pass per batch (no generation): texts are sorted by length so that
batches hold similar lengths and little padding, and come back in their original order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tuneforge.config.schema import RunConfig
from tuneforge.errors import ConfigError, ModelError
from tuneforge.eval.metrics import classification_metrics, confusion
from tuneforge.models import inference_dtype, load_adapter, load_model, load_tokenizer


@dataclass
class Classifier:
    """A sequence-classification model with its tokenizer and class names (id order)."""

    model: Any
    tokenizer: Any
    names: tuple[str, ...]
    cutoff_len: int

    def probabilities(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        """(texts, classes) softmax probabilities, in the order of `texts`."""
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.zeros((len(texts), len(self.names)), dtype=np.float32)
        with (
            tqdm(total=len(texts), desc="classify", unit="text", dynamic_ncols=True) as bar,
            torch.inference_mode(),
        ):
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                inputs = self.tokenizer(
                    [texts[i] for i in batch],
                    padding=True,
                    truncation=True,
                    max_length=self.cutoff_len,
                    return_tensors="pt",
                )
                logits = self.model(**inputs.to(self.model.device)).logits
                out[batch] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
                bar.update(len(batch))
        return out


def load_classifier(cfg: RunConfig) -> Classifier:
    """The base model with a classification head pooling as the run trained it, and the
    adapter of a cls run if any."""
    names = cfg.data.label_names
    where = cfg.model.adapter_name_or_path or cfg.model.model_name_or_path
    if cfg.finetune.stage != "cls":
        raise ModelError(
            f"{where}: not a classifier (stage {cfg.finetune.stage}, no "
            f"label_names in its tuneforge_config.yaml); train one with stage: cls"
        )
    if not names:
        raise ConfigError(
            f"{where}: no label_names, so no trained classifier; give "
            f"--adapter <output_dir of the stage cls run>"
        )
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "right"  # the head reads the last token that is not padding
    model = load_model(
        cfg.model,
        dtype=inference_dtype(cfg.model),
        for_training=False,
        labels=names,
        pad_token_id=tokenizer.pad_token_id,
        pooling=cfg.finetune.resolved_cls_pooling,
    )
    if cfg.model.adapter_name_or_path:
        tuned = load_adapter(model, cfg.model.adapter_name_or_path, trainable=False)
        return Classifier(tuned.eval(), tokenizer, tuple(names), cfg.data.cutoff_len)
    model.eval()
    return Classifier(model, tokenizer, tuple(names), cfg.data.cutoff_len)


def prediction_lines(
    texts: Sequence[str], probabilities: np.ndarray, names: Sequence[str]
) -> list[str]:
    """JSON lines ``{text, label, probabilities: {name: p}}`` for a predictions file."""
    return [
        json.dumps(
            {
                "text": text,
                "label": names[int(row.argmax())],
                "probabilities": {n: round(float(p), 6) for n, p in zip(names, row, strict=True)},
            },
            ensure_ascii=False,
        )
        for text, row in zip(texts, probabilities, strict=True)
    ]


@dataclass(frozen=True)
class TrainerMetrics:
    """``compute_metrics`` for the Trainer: every validation reports accuracy, macro-F1,
    per-class precision/recall and the confusion matrix, with the baseline's figures on the
    same split beside them (``baseline_accuracy``, ``baseline_macro_f1``) and the linear
    probe's the head started from (``probe_accuracy``, ``probe_macro_f1``)."""

    names: tuple[str, ...]
    baseline: dict[str, float] | None
    probe: dict[str, float] | None = None

    def __call__(self, prediction: Any) -> dict[str, Any]:
        logits = prediction.predictions
        logits = logits[0] if isinstance(logits, tuple) else logits
        truth = np.asarray(prediction.label_ids).tolist()
        guess = np.asarray(logits).argmax(-1).tolist()
        metrics: dict[str, Any] = classification_metrics(truth, guess, self.names)
        # A string: TensorBoard shows it as text, the JSONL log keeps it; a list it would drop.
        metrics["confusion_matrix"] = json.dumps(confusion(truth, guess, len(self.names)))
        for name, scores in (("baseline", self.baseline), ("probe", self.probe)):
            if scores is not None:
                metrics.update({f"{name}_{key}": scores[key] for key in ("accuracy", "macro_f1")})
        return metrics
