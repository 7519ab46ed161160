"""``streaming: true``: the stream holds what the whole-file path holds, in the same order when
unshuffled, packed by the same packer, and a bad row stops it with the same one line."""

from __future__ import annotations

from itertools import islice

import datasets
import pytest

from tuneforge.data import streaming
from tuneforge.data.packing import pack
from tuneforge.data.prepare import prepare_datasets
from tuneforge.errors import DataError


def qa_rows(tag: str, count: int) -> list[dict]:
    return [
        {"instruction": f"{tag} question {i} " + "word " * (i % 7), "output": f"{tag} answer {i}"}
        for i in range(count)
    ]


@pytest.fixture
def qa(make_data):
    text = "".join(
        f"Document {i}. " + "Some words of text. " * (i % 9 + 1) + "\n" for i in range(30)
    )
    return make_data(
        {
            "qa": {"file_name": "qa.jsonl"},
            "more": {"file_name": "more.json"},
            "corpus": {"file_name": "corpus.txt"},
        },
        {"qa.jsonl": qa_rows("qa", 40), "more.json": qa_rows("more", 12), "corpus.txt": text},
    )


def streamed(cfg, tokenizer, count: int) -> list[dict]:
    return list(islice(iter(prepare_datasets(cfg, tokenizer).train), count))


def columns(rows) -> list[tuple[list[int], ...]]:
    return [tuple(list(row[name]) for name in sorted(row)) for row in rows]


@pytest.mark.parametrize(("stage", "dataset"), [("sft", "qa"), ("pt", "corpus")])
def test_an_unshuffled_stream_holds_the_whole_file_encoding_in_order(
    qa, make_config, tokenizer, stage, dataset
):
    whole = prepare_datasets(
        make_config(qa, stage=stage, dataset=[dataset], cutoff_len=24, packing=False), tokenizer
    ).train
    cfg = make_config(
        qa,
        stage=stage,
        dataset=[dataset],
        cutoff_len=24,
        packing=False,
        streaming=True,
        buffer_size=1,
    )
    rows = streamed(cfg, tokenizer, len(whole))
    assert columns(rows) == columns(whole)


def test_val_size_rows_come_from_the_start_and_the_rest_is_shuffled_by_seed(
    qa, make_config, tokenizer
):
    whole = prepare_datasets(make_config(qa, dataset=["qa"], packing=False), tokenizer).train
    cfg = make_config(qa, dataset=["qa"], streaming=True, buffer_size=16, val_size=5, packing=False)
    data = prepare_datasets(cfg, tokenizer)
    assert columns(data.eval) == columns(whole.select(range(5)))
    first_pass = list(islice(iter(data.train), 35))
    assert sorted(columns(first_pass)) == sorted(columns(whole.select(range(5, 40))))
    assert columns(first_pass) != columns(whole.select(range(5, 40)))
    assert columns(streamed(cfg, tokenizer, 35)) == columns(first_pass)  # the same seed
    other = make_config(
        qa, dataset=["qa"], streaming=True, buffer_size=16, val_size=5, seed=1, packing=False
    )
    assert columns(streamed(other, tokenizer, 35)) != columns(first_pass)


def test_the_stream_starts_again_reshuffled_when_it_ends(qa, make_config, tokenizer):
    cfg = make_config(qa, dataset=["more"], streaming=True, buffer_size=12, packing=False)
    rows = columns(streamed(cfg, tokenizer, 36))
    passes = [rows[:12], rows[12:24], rows[24:]]
    assert sorted(passes[0]) == sorted(passes[1]) == sorted(passes[2])
    assert passes[0] != passes[1]


@pytest.mark.parametrize("window", [1000, 8])
def test_packing_on_the_fly_packs_each_window_as_the_whole_file_packer_does(
    qa, make_config, tokenizer, monkeypatch, window
):
    monkeypatch.setattr(streaming, "PACK_WINDOW", window)
    keys = {"dataset": ["qa"], "cutoff_len": 128, "streaming": True, "buffer_size": 1}
    samples = streamed(make_config(qa, packing=False, **keys), tokenizer, 40)
    packed = streamed(make_config(qa, packing=True, **keys), tokenizer, 40)
    expected = []
    for start in range(0, 40, window):
        part = datasets.Dataset.from_list(samples[start : start + window])
        expected += list(pack(part, 128))
    assert columns(packed[: len(expected)]) == columns(expected)
    assert len(expected) < 40  # rows were really packed
    assert all(row["position_ids"][0] == 0 for row in packed)


def test_mix_strategy_interleaves_the_streams(qa, make_config, tokenizer):
    cfg = make_config(
        qa,
        dataset=["qa", "more"],
        streaming=True,
        mix_strategy="interleave_under",
        interleave_probs=[0.5, 0.5],
    )
    texts = [tokenizer.decode(row["input_ids"]) for row in streamed(cfg, tokenizer, 20)]
    assert any("qa question" in text for text in texts)
    assert any("more question" in text for text in texts)


def test_a_bad_row_stops_the_stream_with_the_file_and_row_when_it_is_reached(
    make_data, make_config, tokenizer, monkeypatch
):
    rows = qa_rows("qa", 12)
    rows[8] = {"instruction": "no answer here"}
    folder = make_data({"qa": {"file_name": "qa.jsonl"}}, {"qa.jsonl": rows})
    cfg = make_config(folder, dataset=["qa"], streaming=True, buffer_size=1)
    with pytest.raises(DataError) as early:  # in the first rows, which the statistics read
        prepare_datasets(cfg, tokenizer)
    assert early.value.lines == [f"{folder / 'qa.jsonl'}: row 9: missing 'output'"]
    monkeypatch.setattr(streaming, "PEEK_ROWS", 3)
    data = prepare_datasets(cfg, tokenizer)  # the bad row is further than was read
    with pytest.raises(DataError) as late:
        list(islice(iter(data.train), 20))
    assert late.value.lines == early.value.lines


def test_the_statistics_say_they_come_from_the_first_samples(qa, make_config, tokenizer):
    monkeypatch_rows = 10
    cfg = make_config(
        qa, dataset=["qa"], streaming=True, max_samples=monkeypatch_rows, packing=False
    )
    data = prepare_datasets(cfg, tokenizer)
    assert data.stats.sampled and data.stats.train_samples == 10
    assert data.stats.summary().startswith(
        "streamed, so counted on its first 10 training samples only (the stream's length is "
        "unknown until training reads it) (qa: alpaca (detected); 0 for eval)"
    )
    assert len(data.train.head_lengths) == 10  # the resume fingerprint


def test_eval_dataset_is_read_whole_beside_the_stream(qa, make_config, tokenizer):
    cfg = make_config(qa, dataset=["qa"], eval_dataset=["more"], streaming=True)
    data = prepare_datasets(cfg, tokenizer)
    assert isinstance(data.eval, datasets.Dataset) and len(data.eval) == 12


def test_too_few_rows_for_val_size_is_one_line(qa, make_config, tokenizer):
    cfg = make_config(qa, dataset=["more"], streaming=True, val_size=20)
    with pytest.raises(DataError) as info:
        prepare_datasets(cfg, tokenizer)
    assert info.value.lines == [
        "val_size: 20 rows asked for validation, and the stream holds only 12; lower "
        "val_size or add data"
    ]
