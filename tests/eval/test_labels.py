"""Label columns, label names and their order, and every bad labelled input."""

from __future__ import annotations

import datasets
import pytest

from tuneforge.data.labelled import check_seen, label_name, label_names, to_labelled
from tuneforge.data.registry import DatasetSpec
from tuneforge.errors import DataError


def rows(**columns) -> datasets.Dataset:
    return datasets.Dataset.from_dict(columns)


def test_numeric_labels_keep_numeric_order_and_text_labels_sort():
    assert label_names(None, ["10", "2", "2", "1"]) == ("1", "2", "10")
    assert label_names(None, ["pos", "neg", "neu"]) == ("neg", "neu", "pos")


def test_configured_label_names_set_the_ids():
    assert label_names(["pos", "neg"], ["neg", "pos"]) == ("pos", "neg")
    with pytest.raises(DataError, match="labels not in label_names: neu; allowed: pos, neg"):
        label_names(["pos", "neg"], ["neg", "pos", "neu"])


def test_labels_may_be_text_or_whole_numbers():
    assert [label_name(v) for v in (" pos ", 3, 1.0, 2.5, None, True, "")] == [
        "pos",
        "3",
        "1",
        None,
        None,
        None,
        None,
    ]


def test_a_single_class_is_refused():
    with pytest.raises(
        DataError, match="single class \\('pos'\\); a classifier needs at least two"
    ):
        label_names(None, ["pos", "pos"])


def test_validation_labels_never_seen_in_training_are_named():
    with pytest.raises(
        DataError,
        match="the validation split: labels never seen in training: "
        "'neu' \\(2 rows\\); the training data has: neg, pos",
    ):
        check_seen(["pos", "neu", "neu"], ["neg", "pos"], "the validation split")


def test_rows_become_text_and_label_names():
    spec = DatasetSpec("s", columns={"prompt": "review", "response": "stars"})
    out = to_labelled(rows(review=["good", "bad"], stars=[5, 1]), "f.csv", spec)
    assert out["text"] == ["good", "bad"] and out["label"] == ["5", "1"]


def test_missing_label_column_is_one_line_naming_the_key():
    with pytest.raises(DataError) as err:
        to_labelled(rows(text=["a"], sentiment=["pos"]), "f.jsonl", DatasetSpec("s"))
    assert err.value.lines == [
        "f.jsonl: no label column 'label' (stage cls); the file has: "
        "text, sentiment; set columns.response in dataset_info.json"
    ]


def test_empty_texts_and_missing_labels_name_their_rows():
    with pytest.raises(DataError) as err:
        to_labelled(
            rows(text=["ok", "  ", "fine"], label=["a", "b", None]), "f.json", DatasetSpec("s")
        )
    assert err.value.lines == [
        "f.json: row 2: empty text in 'text'",
        "f.json: row 3: 'label' is None; expected a label (text or a whole number)",
    ]


def test_conversation_columns_do_not_apply_to_classification():
    with pytest.raises(DataError, match="columns.messages does not apply to stage cls"):
        to_labelled(rows(text=["a"], label=["b"]), "f", DatasetSpec("s", columns={"messages": "m"}))
