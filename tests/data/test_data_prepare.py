"""prepare_datasets end to end: splits, packing, stats, and configuration errors."""

from __future__ import annotations

import logging

import pytest

from tuneforge.data import prepare_datasets
from tuneforge.errors import ConfigError

IGNORE = -100


def alpaca(count: int, *, start: int = 0, long_every: int = 0) -> list[dict[str, str]]:
    return [
        {
            "instruction": f"Question {i}?"
            + (" and more" * 60 if long_every and i % long_every == 0 else ""),
            "input": "",
            "output": f"Answer {i}.",
        }
        for i in range(start, start + count)
    ]


SHAREGPT = [
    {
        "conversations": [
            {"from": "human", "value": f"Hi {i}"},
            {"from": "gpt", "value": f"Hello {i}"},
        ]
    }
    for i in range(6)
]


def test_sft_with_two_datasets_a_val_share_and_stats(tokenizer, make_data, make_config):
    folder = make_data(
        {"a": {"file_name": "a.json"}, "s": {"file_name": "s.jsonl"}},
        {"a.json": alpaca(20, long_every=5), "s.jsonl": SHAREGPT},
    )
    cfg = make_config(folder, dataset="a,s", val_size=0.25, cutoff_len=64, packing=False)
    prepared = prepare_datasets(cfg, tokenizer)
    assert prepared.train.column_names == ["input_ids", "labels"]
    assert (len(prepared.train), len(prepared.eval)) == (20, 6)
    stats = prepared.stats
    assert dict(stats.samples) == {"a": 20, "s": 6}
    assert stats.formats["s"] == "sharegpt (from/value, human/gpt; detected)"
    assert stats.train_samples == 20 and stats.eval_samples == 6
    assert 0 < stats.truncated < 20 and stats.lengths.max > 64
    assert stats.total_tokens == sum(len(ids) for ids in prepared.train["input_ids"])
    assert "training samples (a: 20 alpaca (detected)" in stats.summary()
    assert f"{stats.truncated} truncated to cutoff_len=64" in stats.summary()
    assert prepared.template is not None and prepared.template.name is None
    again = prepare_datasets(cfg, tokenizer)
    assert again.eval["input_ids"] == prepared.eval["input_ids"]  # seeded split


def test_val_size_count_eval_dataset_and_packing(tokenizer, make_data, make_config):
    folder = make_data(
        {"a": {"file_name": "a.json"}, "b": {"file_name": "b.json"}},
        {"a.json": alpaca(12), "b.json": alpaca(3, start=100)},
    )
    counted = prepare_datasets(
        make_config(folder, dataset="a", val_size=5, packing=False), tokenizer
    )
    assert (len(counted.train), len(counted.eval)) == (7, 5)

    packed = prepare_datasets(
        make_config(folder, dataset="a", eval_dataset="b", packing=True, cutoff_len=128), tokenizer
    )
    assert packed.train.column_names == ["input_ids", "labels", "position_ids"]
    assert packed.eval.column_names == ["input_ids", "labels"]  # eval is never packed
    assert (
        len(packed.eval) == 3 and len(packed.train) < 12 and packed.stats.rows == len(packed.train)
    )
    assert all(len(ids) <= 128 for ids in packed.train["input_ids"])
    assert sum(len(ids) for ids in packed.train["input_ids"]) == packed.stats.total_tokens


def test_pt_packs_by_default_and_keeps_every_token(tokenizer, make_data, make_config):
    lines = [" ".join(f"w{i}x{j}" for j in range(i * 7 + 1)) for i in range(8)]
    folder = make_data({"t": {"file_name": "t.txt"}}, {"t.txt": "\n".join(lines) + "\n"})
    prepared = prepare_datasets(
        make_config(folder, dataset="t", stage="pt", cutoff_len=32), tokenizer
    )
    assert prepared.template is None
    assert prepared.train.column_names == ["input_ids", "labels", "position_ids"]
    given = [t for line in lines for t in [*tokenizer(line)["input_ids"], tokenizer.eos_token_id]]
    packed = [t for ids in prepared.train["input_ids"] for t in ids]
    assert len(packed) == len(given)  # chunking and packing lose (and add) no token
    assert sorted(packed) == sorted(given)  # and they are the same tokens
    assert (
        prepared.stats.truncated > 0
        and "split into chunks of cutoff_len=32" in prepared.stats.summary()
    )


def test_max_samples_applies_per_dataset(tokenizer, make_data, make_config):
    folder = make_data(
        {"a": {"file_name": "a.json"}, "b": {"file_name": "b.json"}},
        {"a.json": alpaca(10), "b.json": alpaca(10, start=50)},
    )
    prepared = prepare_datasets(
        make_config(folder, dataset="a,b", max_samples=3, packing=False), tokenizer
    )
    assert dict(prepared.stats.samples) == {"a": 3, "b": 3}
    texts = [tokenizer.decode(ids) for ids in prepared.train["input_ids"]]
    assert ["Question 0?" in texts[0], "Question 50?" in texts[3]] == [True, True]


def test_config_problems(tokenizer, make_data, make_config):
    folder = make_data({"a": {"file_name": "a.json"}}, {"a.json": alpaca(4)})
    with pytest.raises(ConfigError, match="^dataset: not set"):
        prepare_datasets(make_config(folder), tokenizer)
    with pytest.raises(ConfigError, match="^val_size and eval_dataset: set one"):
        prepare_datasets(
            make_config(folder, dataset="a", eval_dataset="a", val_size=0.1), tokenizer
        )
    with pytest.raises(ConfigError, match="^val_size: 0.1 gives 0 validation samples out of 4"):
        prepare_datasets(make_config(folder, dataset="a", val_size=0.1), tokenizer)


def test_tools_without_template_syntax_go_to_the_system_prompt_with_a_warning(
    tokenizer, make_data, make_config, caplog
):
    rows = [{"instruction": "2+2?", "output": "4", "tools": '[{"name": "add"}]'}]
    folder = make_data({"a": {"file_name": "a.json"}}, {"a.json": rows})
    with caplog.at_level(logging.WARNING):
        prepared = prepare_datasets(make_config(folder, dataset="a", template="chatml"), tokenizer)
    assert "template 'chatml' has no tool syntax of its own" in caplog.text
    text = tokenizer.decode(prepared.train[0]["input_ids"])
    assert text.startswith("<|im_start|>system\nYou can call functions")
    assert '{"type": "function", "function": {"name": "add"}}' in text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        prepared = prepare_datasets(make_config(folder, dataset="a", template="qwen"), tokenizer)
    assert "no tool syntax" not in caplog.text
    assert "<tools>" in tokenizer.decode(prepared.train[0]["input_ids"])


def test_worker_processes_give_the_same_result(tokenizer, make_data, make_config):
    folder = make_data({"a": {"file_name": "a.json"}}, {"a.json": alpaca(8, long_every=3)})
    single = prepare_datasets(make_config(folder, dataset="a", cutoff_len=48), tokenizer)
    workers = prepare_datasets(
        make_config(
            folder, dataset="a", cutoff_len=48, overwrite_cache=True, preprocessing_num_workers=2
        ),
        tokenizer,
    )
    assert workers.train["input_ids"] == single.train["input_ids"]
    assert workers.train["labels"] == single.train["labels"]
    assert workers.stats == single.stats
