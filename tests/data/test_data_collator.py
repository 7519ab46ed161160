"""Batches pad to the longest row; padding never reaches the loss or real tokens."""

from __future__ import annotations

import torch

from tuneforge.data import build_collator

ROWS = [
    {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
    {"input_ids": [8, 9, 10, 11, 12], "labels": [-100, -100, 10, 11, 12]},
]


def test_unpacked_batches_are_right_padded_with_an_attention_mask(tokenizer):
    batch = build_collator(tokenizer, batching="padded")(ROWS)
    assert set(batch) == {"input_ids", "labels", "attention_mask"}
    assert all(value.shape == (2, 5) and value.dtype == torch.long for value in batch.values())
    pad = tokenizer.pad_token_id
    assert batch["input_ids"][0].tolist() == [5, 6, 7, pad, pad]
    assert batch["labels"][0].tolist() == [-100, 6, 7, -100, -100]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]


def test_packed_batches_have_no_mask_and_the_tail_is_its_own_segment(tokenizer):
    rows = [{**ROWS[0], "position_ids": [0, 1, 0]}, ROWS[1]]
    batch = build_collator(tokenizer, batching="packed")(rows)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["position_ids"].tolist() == [[0, 1, 0, 0, 1], [0, 1, 2, 3, 4]]
    assert batch["labels"][0].tolist() == [-100, 6, 7, -100, -100]


def test_padding_free_batches_are_one_row_of_the_samples_back_to_back(tokenizer):
    batch = build_collator(tokenizer, batching="padding_free")(ROWS)
    assert set(batch) == {"input_ids", "labels", "position_ids"}
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4]]
    # each sample's first label is masked: it must not be predicted from the previous sample
    rows = [{"input_ids": [5, 6], "labels": [5, 6]}, {"input_ids": [7, 8], "labels": [7, 8]}]
    labels = build_collator(tokenizer, batching="padding_free")(rows)["labels"]
    assert labels.tolist() == [[-100, 6, -100, 8]]


def test_pad_id_falls_back_to_eos(tokenizer):
    class NoPad:
        pad_token_id = None
        eos_token_id = 7

    assert build_collator(NoPad(), batching="padded").pad_id == 7
