"""A TF-IDF + logistic-regression baseline, trained and scored on the classifier's own split.

Fine-tuning a language model to classify costs hours; a linear model over character and word
n-grams costs seconds and is often close. Reporting it beside the fine-tuned model answers
the question users actually have: was the LLM worth it? Like the model, it learns from the
training split only (the vectoriser's vocabulary and IDF weights included), so both are
measured on texts neither has seen.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tuneforge.eval.metrics import classification_metrics, jieba_words, resolve_tokenize

if TYPE_CHECKING:
    from tuneforge.data.prepare import LabelledData

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Baseline:
    """A fitted scikit-learn pipeline: texts -> label ids."""

    pipeline: Any
    description: str

    def predict(self, texts: Sequence[str]) -> list[int]:
        return [int(label) for label in self.pipeline.predict(list(texts))]

    def score(
        self, texts: Sequence[str], label_ids: Sequence[int], names: Sequence[str]
    ) -> dict[str, float]:
        return classification_metrics(label_ids, self.predict(texts), names)


def fit_baseline(texts: Sequence[str], label_ids: Sequence[int]) -> Baseline:
    """Character 1-4-grams (within words) + word 1-2-grams (jieba words for Chinese), both
    sublinear TF-IDF, into a logistic regression with scikit-learn's defaults."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    chinese = resolve_tokenize("auto", texts) == "jieba"
    words = (
        TfidfVectorizer(
            analyzer="word",
            ngram_range=(1, 2),
            sublinear_tf=True,
            tokenizer=jieba_words,
            token_pattern=None,
        )
        if chinese
        else TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True)
    )
    characters = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True)
    pipeline = make_pipeline(make_union(characters, words), LogisticRegression(max_iter=2000))
    pipeline.fit(list(texts), list(label_ids))
    what = "jieba words" if chinese else "words"
    return Baseline(pipeline, f"TF-IDF (characters 1-4, {what} 1-2) + logistic regression")


def score_baseline(data: LabelledData) -> dict[str, float] | None:
    """Fit on the training split, score on the validation split (None without one)."""
    if data.raw.eval is None or data.eval is None:
        return None
    baseline = fit_baseline(data.raw.train["text"], data.train["labels"])
    scores = baseline.score(data.raw.eval["text"], data.eval["labels"], data.names)
    logger.info(
        "Baseline %s: validation accuracy %.4f, macro-F1 %.4f",
        baseline.description,
        scores["accuracy"],
        scores["macro_f1"],
    )
    return scores
