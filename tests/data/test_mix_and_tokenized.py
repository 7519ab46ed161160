"""LLaMA-Factory's mix_strategy / interleave_probs (several datasets drawn by chance) and
tokenized_path (tokenised data saved once, reused while unchanged, refused when stale)."""

from __future__ import annotations

import json
import logging

import pytest

from tuneforge.config.load import load_config
from tuneforge.data.prepare import prepare_datasets, read_splits
from tuneforge.errors import ConfigError, DataError


def rows(tag: str, count: int) -> list[dict]:
    return [
        {"instruction": f"{tag} question {i}", "output": f"{tag} answer {i}"} for i in range(count)
    ]


@pytest.fixture
def two_sets(make_data):
    return make_data(
        {"big": {"file_name": "big.json"}, "small": {"file_name": "small.json"}},
        {"big.json": rows("big", 30), "small.json": rows("small", 6)},
    )


@pytest.mark.parametrize(
    ("strategy", "check"),
    [
        ("concat", lambda n: n == 36),
        ("interleave_under", lambda n: n < 36),  # stops when one runs out
        ("interleave_over", lambda n: n > 36),  # goes on until both have run out, repeating
    ],
)
def test_mix_strategy_decides_how_many_rows_of_each(two_sets, make_config, strategy, check):
    cfg = make_config(two_sets, dataset=["big", "small"], mix_strategy=strategy)
    train = read_splits(cfg, None).train
    assert check(len(train))
    kinds = {text.split()[0] for text in (turn[0]["content"] for turn in train["messages"])}
    assert kinds == {"big", "small"}


def test_interleave_probs_bias_the_draw(two_sets, make_config):
    cfg = make_config(
        two_sets,
        dataset=["big", "small"],
        mix_strategy="interleave_under",
        interleave_probs=[0.9, 0.1],
    )
    train = read_splits(cfg, None).train
    firsts = [turns[0]["content"].split()[0] for turns in train["messages"]]
    assert firsts.count("big") > 3 * firsts.count("small")


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"interleave_probs": "0.5,0.4", "mix_strategy": "interleave_under"}, "add up to 1"),
        ({"interleave_probs": "1.0", "mix_strategy": "interleave_over"}, "1 chances for 2"),
        ({"interleave_probs": "0.5,0.5"}, "needs mix_strategy interleave"),
        ({"mix_strategy": "mixed"}, "allowed: concat, interleave_under or interleave_over"),
        ({"tokenized_path": "t", "stage": "cls"}, "tokenized_path applies to stages sft and pt"),
    ],
)
def test_mixing_and_cache_keys_are_checked(keys, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"dataset": "a,b", **keys})


def test_tokenized_path_is_reused_and_refused_when_stale(
    two_sets, make_config, tokenizer, tmp_path, caplog
):
    folder = tmp_path / "tokens"
    cfg = make_config(two_sets, dataset=["big"], cutoff_len=64, tokenized_path=str(folder))
    first = prepare_datasets(cfg, tokenizer)
    assert (folder / "tuneforge_tokenized.json").is_file()
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        again = prepare_datasets(cfg, tokenizer)
    assert "unchanged" in caplog.text
    assert again.train["input_ids"] == first.train["input_ids"]
    assert again.stats == first.stats

    shorter = make_config(two_sets, dataset=["big"], cutoff_len=32, tokenized_path=str(folder))
    with pytest.raises(DataError, match=r"cutoff_len 64 -> 32"):
        prepare_datasets(shorter, tokenizer)

    (two_sets / "big.json").write_text(json.dumps(rows("big", 31)))
    with pytest.raises(DataError, match=r"data file .*big\.json"):
        prepare_datasets(cfg, tokenizer)
    remade = make_config(
        two_sets, dataset=["big"], cutoff_len=64, tokenized_path=str(folder), overwrite_cache=True
    )
    prepare_datasets(remade, tokenizer)
    assert prepare_datasets(cfg, tokenizer).stats.train_samples == first.stats.train_samples + 1


def test_tokenized_path_never_takes_a_folder_of_the_users(
    two_sets, make_config, tokenizer, tmp_path
):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    cfg = make_config(two_sets, dataset=["big"], tokenized_path=str(folder))
    with pytest.raises(DataError, match="holds files tuneforge did not write"):
        prepare_datasets(cfg, tokenizer)
    assert (folder / "notes.txt").read_text() == "keep me"
