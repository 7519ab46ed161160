"""``tuneforge data clean``: a cleaned copy tuneforge reads back, the reasons for every
dropped sample, and an input that never changes."""

from __future__ import annotations

import hashlib
import json

import pytest

from tuneforge.data.clean import clean_datasets, normalize_whitespace
from tuneforge.data.prepare import read_dataset
from tuneforge.data.registry import resolve
from tuneforge.errors import DataError

ROWS = [
    {"instruction": "What is the capital of France?  ", "input": "", "output": "Paris.\r\n"},
    {"instruction": "what is the capital of france", "input": "", "output": "Paris"},
    {"instruction": "Name a colour.", "input": "", "output": " \n "},
    {"instruction": "Say hi.", "input": "", "output": "Hi!\n\n\n\nBye."},
    {"instruction": "Explain.", "input": "", "output": "word " * 200},
]


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clean_writes_a_readable_copy_and_never_touches_the_input(
    make_data, make_config, tokenizer, tmp_path
):
    folder = make_data({"qa": {"file_name": "qa.json"}}, {"qa.json": ROWS})
    source = folder / "qa.json"
    before = (digest(source), source.stat().st_mtime_ns)
    out = tmp_path / "clean" / "qa_clean.jsonl"
    report = clean_datasets(make_config(folder, dataset=["qa"]), tokenizer, out, max_tokens=150)
    assert (digest(source), source.stat().st_mtime_ns) == before
    assert report.kept == {"qa": 2}
    assert report.dropped["qa"] == {"duplicates": 1, "unusable": 1, "too long": 1}
    dropped = [json.loads(line) for line in report.dropped_list.read_text().splitlines()]
    assert [(row["row"], row["reason"].split(":")[0]) for row in dropped] == [
        (2, f"duplicate of {source}"),
        (3, "unusable"),
        (5, "too long"),
    ]

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": "Paris."}
    assert rows[1]["messages"][-1]["content"] == "Hi!\n\nBye."
    (folder / "dataset_info.json").write_text(
        json.dumps({"qa": {"file_name": "qa.json"}, "clean": report.entry})
    )
    (spec,) = resolve(["clean"], folder)
    conversations, _ = read_dataset(spec, make_config(folder, dataset=["clean"]), None)
    assert [c["messages"][0]["content"] for c in conversations] == [
        "What is the capital of France?",
        "Say hi.",
    ]


def test_clean_refuses_to_write_over_its_input(make_data, make_config, tokenizer):
    folder = make_data({"qa": {"file_name": "qa.jsonl"}}, {"qa.jsonl": ROWS})
    before = digest(folder / "qa.jsonl")
    with pytest.raises(DataError, match="is one of the input files"):
        clean_datasets(make_config(folder, dataset=["qa"]), tokenizer, folder / "qa.jsonl")
    assert digest(folder / "qa.jsonl") == before


def test_a_dataset_empty_after_cleaning_is_one_line(make_data, make_config, tokenizer, tmp_path):
    rows = [{"instruction": "Hi", "input": "", "output": "Hello"}] * 3
    folder = make_data({"same": {"file_name": "same.json"}}, {"same.json": rows})
    with pytest.raises(DataError) as caught:
        clean_datasets(
            make_config(folder, dataset=["same"]), tokenizer, tmp_path / "c.jsonl", min_tokens=1000
        )
    assert caught.value.lines == [
        "dataset 'same': every sample was dropped by cleaning "
        "(3 too short); nothing would be left to train on"
    ]
    assert not (tmp_path / "c.jsonl").exists()


def test_whitespace_is_normalised_but_indentation_kept():
    assert normalize_whitespace("  a  \r\n    b\u00a0\n\n\n\nc  ") == "a\n    b\n\nc"
