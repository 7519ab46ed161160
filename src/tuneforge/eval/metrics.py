"""Scores for generated answers and for classifiers, all as fractions in [0, 1].

Generation: BLEU-4 from sacrebleu (corpus level, its standard smoothing), ROUGE-1/2/L F1 from
rouge-score (averaged over samples) and exact match. BLEU and ROUGE numbers from different
tools or tokenisations are not comparable, so every key names its implementation
(``sacrebleu_bleu4``, ``rouge_score_rougeL``). Chinese has no spaces between words: scored on
whole sentences or single characters the numbers mean little, and rouge-score's own tokenizer
drops Han characters altogether. A sample whose reference is mostly Chinese is therefore
segmented with jieba first (each sample on its own, so a test set mixing English and Chinese
is scored properly in both); ``metric_tokenize`` forces one way for every sample.

Classification: accuracy, macro-F1 and per-class precision/recall from scikit-learn.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tuneforge.errors import ConfigError

# Metrics early stopping may watch in stage cls (the trainer prefixes "eval_").

# Import name -> PyPI name of what each kind of evaluation needs.
GENERATION_PACKAGES: Mapping[str, str] = {"sacrebleu": "sacrebleu", "rouge_score": "rouge-score"}
CHINESE_PACKAGES: Mapping[str, str] = {"jieba": "jieba"}
CLASSIFICATION_PACKAGES: Mapping[str, str] = {"sklearn": "scikit-learn"}

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
CHINESE_SHARE = 0.3  # auto: jieba when more than this share of non-space characters are Han
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def require(packages: Mapping[str, str], purpose: str) -> None:
    """Fail before any model work when a metric's package is missing (not after generating)."""
    missing = [pip for module, pip in packages.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise ConfigError(f"{purpose} needs {', '.join(missing)}: pip install 'tuneforge[eval]'")


def chinese_share(texts: Iterable[str]) -> float:
    """The share of non-space characters that are Han characters."""
    han = total = 0
    for text in texts:
        han += len(_HAN.findall(text))
        total += sum(1 for char in text if not char.isspace())
    return han / total if total else 0.0


def resolve_tokenize(setting: str, texts: Sequence[str]) -> str:
    """``words`` or ``jieba``: the setting, or for ``auto`` what the texts are written in."""
    if setting != "auto":
        return setting
    return "jieba" if chinese_share(texts) > CHINESE_SHARE else "words"


def jieba_words(text: str) -> list[str]:
    """Chinese word segmentation; whitespace is dropped, punctuation kept as tokens."""
    import jieba

    jieba.setLogLevel(logging.WARNING)
    return [token for token in jieba.lcut(text) if token.strip()]


class _JiebaTokenizer:
    """rouge-score's tokenizer interface (``tokenize(text) -> tokens``) over jieba."""

    @staticmethod
    def tokenize(text: str) -> list[str]:
        return jieba_words(text)


@dataclass(frozen=True)
class GenerationScores:
    """Corpus metrics, each sample's ROUGE-L F1 (to find the rows that differ most), and how
    the text was split (``words``, ``jieba`` or, mixed, ``words (8), jieba (4)``)."""

    metrics: dict[str, float]
    per_sample: list[float]
    tokenize: str


def score_generation(
    predictions: Sequence[str], references: Sequence[str], tokenize: str
) -> GenerationScores:
    """BLEU-4, ROUGE-1/2/L and exact match of predictions against one reference each.

    Each pair is split as `tokenize` says (``auto``: by its reference's script): words by
    sacrebleu's 13a tokenizer for BLEU and rouge-score's own for ROUGE, or jieba words for
    both. BLEU is then computed over the whole corpus of split text.
    """
    import sacrebleu
    from rouge_score import rouge_scorer, tokenizers
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    modes = [resolve_tokenize(tokenize, [reference]) for reference in references]
    words = Tokenizer13a()
    split: dict[str, Callable[[str], str]] = {
        "words": words,
        "jieba": lambda text: " ".join(jieba_words(text)),
    }
    scorers = {
        "words": rouge_scorer.RougeScorer(
            list(ROUGE_TYPES), tokenizer=tokenizers.DefaultTokenizer(use_stemmer=False)
        ),
        "jieba": rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=_JiebaTokenizer()),
    }
    pairs = list(zip(predictions, references, modes, strict=True))
    bleu = sacrebleu.corpus_bleu(
        [split[mode](p) for p, _, mode in pairs],
        [[split[mode](r) for _, r, mode in pairs]],
        tokenize="none",
    )
    rouge = [scorers[mode].score(r, p) for p, r, mode in pairs]
    count = len(rouge) or 1
    metrics = {"sacrebleu_bleu4": bleu.score / 100}
    for kind in ROUGE_TYPES:
        metrics[f"rouge_score_{kind}"] = sum(r[kind].fmeasure for r in rouge) / count
    metrics["exact_match"] = (
        sum(" ".join(p.split()) == " ".join(r.split()) for p, r, _ in pairs) / count
    )
    used = Counter(modes)
    described = (
        next(iter(used))
        if len(used) == 1
        else ", ".join(f"{mode} ({n})" for mode, n in sorted(used.items()))
    )
    return GenerationScores(metrics, [r["rougeL"].fmeasure for r in rouge], described)


def classification_metrics(
    y_true: Sequence[int], y_pred: Sequence[int], labels: Sequence[str]
) -> dict[str, float]:
    """Accuracy, macro-F1 over every class, and precision/recall per class (by name)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    ids = list(range(len(labels)))
    precision, recall, _, _ = precision_recall_fscore_support(
        y_true, y_pred, labels=ids, zero_division=0
    )
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=ids, average="macro", zero_division=0)),
    }
    for name, p, r in zip(labels, precision, recall, strict=True):
        metrics[f"precision_{name}"] = float(p)
        metrics[f"recall_{name}"] = float(r)
    return metrics


def confusion(y_true: Sequence[int], y_pred: Sequence[int], classes: int) -> list[list[int]]:
    """Rows: true class, columns: predicted class, in label-id order."""
    from sklearn.metrics import confusion_matrix

    return confusion_matrix(y_true, y_pred, labels=list(range(classes))).tolist()
