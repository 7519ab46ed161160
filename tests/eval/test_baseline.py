"""The TF-IDF baseline learns from the training split only, in English and Chinese."""

from __future__ import annotations

from tuneforge.eval.baseline import fit_baseline

TRAIN = [
    "great phone, love it",
    "awful battery, hate it",
    "love the screen",
    "hate the noise",
    "really great value",
    "awful support",
]
LABELS = [1, 0, 1, 0, 1, 0]


def vocabulary(baseline) -> set[str]:
    union = baseline.pipeline.steps[0][1]
    return {term for _, vectoriser in union.transformer_list for term in vectoriser.vocabulary_}


def test_baseline_separates_what_it_was_trained_on():
    baseline = fit_baseline(TRAIN, LABELS)
    assert baseline.predict(["I love it, great", "hate it, awful"]) == [1, 0]
    scores = baseline.score(["love it", "awful noise"], [1, 0], ["neg", "pos"])
    assert scores["accuracy"] == 1.0 and "precision_pos" in scores


def test_vocabulary_comes_from_the_training_texts_only():
    baseline = fit_baseline(TRAIN, LABELS)
    baseline.predict(["zebra xylophone"])
    assert "zebra" not in vocabulary(baseline)
    assert "great" in vocabulary(baseline)


def test_chinese_word_features_use_jieba():
    baseline = fit_baseline(["质量很好", "质量很差", "非常喜欢", "非常失望"], [1, 0, 1, 0])
    assert "jieba" in baseline.description
    assert "质量" in vocabulary(baseline)
