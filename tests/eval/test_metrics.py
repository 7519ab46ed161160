"""Metric values checked against numbers worked out by hand, English and Chinese."""

from __future__ import annotations

import math

import pytest

from tuneforge.errors import ConfigError
from tuneforge.eval.metrics import (
    classification_metrics,
    confusion,
    jieba_words,
    require,
    resolve_tokenize,
    score_generation,
)


def test_english_bleu_rouge_and_exact_match_match_hand_computation():
    # n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths, so no brevity penalty.
    scores = score_generation(["the cat sat on the mat"], ["the cat sat on a mat"], "words")
    m = scores.metrics
    assert m["sacrebleu_bleu4"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-4)
    assert m["rouge_score_rouge1"] == pytest.approx(5 / 6)
    assert m["rouge_score_rouge2"] == pytest.approx(3 / 5)
    assert m["rouge_score_rougeL"] == pytest.approx(5 / 6)  # LCS: the cat sat on mat
    assert m["exact_match"] == 0
    assert scores.per_sample == [pytest.approx(5 / 6)]


def test_exact_match_ignores_spacing_but_not_case():
    m = score_generation(["Paris.", "paris."], [" Paris. ", "Paris."], "words").metrics
    assert m["exact_match"] == 0.5


def test_chinese_is_scored_on_jieba_words():
    prediction, reference = "我很好，谢谢。", "我很好，谢谢你。"
    assert jieba_words(prediction) == ["我", "很", "好", "，", "谢谢", "。"]
    assert jieba_words(reference) == ["我", "很", "好", "，", "谢谢", "你", "。"]
    m = score_generation([prediction], [reference], "jieba").metrics
    # unigrams: 6 of 6 predicted, 6 of 7 expected; bigrams 4 of 5 and 4 of 6
    assert m["rouge_score_rouge1"] == pytest.approx(12 / 13)
    assert m["rouge_score_rouge2"] == pytest.approx(8 / 11)
    assert m["rouge_score_rougeL"] == pytest.approx(12 / 13)
    # precisions 6/6, 4/5, 3/4, 2/3; brevity penalty exp(1 - 7/6)
    bleu = math.exp(1 - 7 / 6) * (1 * 4 / 5 * 3 / 4 * 2 / 3) ** 0.25
    assert m["sacrebleu_bleu4"] == pytest.approx(bleu, abs=1e-4)


def test_without_segmentation_chinese_rouge_means_nothing():
    m = score_generation(["我很好，谢谢。"], ["我很好，谢谢你。"], "words").metrics
    assert m["rouge_score_rouge1"] == 0  # rouge-score's own tokenizer drops Han characters


def test_tokenisation_is_chosen_by_script_unless_forced():
    assert resolve_tokenize("auto", ["天空通常是蓝色的。", "Paris"]) == "jieba"
    assert resolve_tokenize("auto", ["The sky is blue.", "蓝"]) == "words"
    assert resolve_tokenize("words", ["天空通常是蓝色的。"]) == "words"
    assert resolve_tokenize("jieba", ["The sky"]) == "jieba"


def test_classification_metrics_and_confusion_matrix():
    truth, guess = [0, 0, 1, 1, 2], [0, 1, 1, 1, 0]
    m = classification_metrics(truth, guess, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(0.6)
    assert (m["precision_a"], m["recall_a"]) == (pytest.approx(0.5), pytest.approx(0.5))
    assert (m["precision_b"], m["recall_b"]) == (pytest.approx(2 / 3), pytest.approx(1.0))
    assert (m["precision_c"], m["recall_c"]) == (0.0, 0.0)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 0.0) / 3)
    assert confusion(truth, guess, 3) == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]


def test_missing_metric_package_is_named_with_the_install_command():
    with pytest.raises(
        ConfigError,
        match=r"tuneforge eval needs no-such-package: "
        r"pip install 'tuneforge\[eval\]'",
    ):
        require({"no_such_module_xyz": "no-such-package", "json": "json"}, "tuneforge eval")


def test_a_mixed_test_set_scores_each_sample_in_its_own_script():
    scores = score_generation(
        ["the cat sat on the mat", "我很好，谢谢。"],
        ["the cat sat on a mat", "我很好，谢谢你。"],
        "auto",
    )
    assert scores.tokenize == "jieba (1), words (1)"
    assert scores.per_sample == [pytest.approx(5 / 6), pytest.approx(12 / 13)]
    assert scores.metrics["rouge_score_rouge1"] == pytest.approx((5 / 6 + 12 / 13) / 2)
