"""RowTracker: what each row's callback receives, where stop strings cut, why rows finish."""

from __future__ import annotations

import torch

from tuneforge.infer.decoding import Row, RowTracker

END = 2  # <|im_end|> in the default model's tokenizer


def run(tracker: RowTracker, steps: list[list[int]]) -> list[bool]:
    """Feed one new token per row per step, as generate does; the last step's done flags."""
    history = torch.zeros((len(tracker.rows), 1), dtype=torch.long)
    done = []
    for step in steps:
        history = torch.cat([history, torch.tensor(step)[:, None]], dim=1)
        done = tracker(history, None).tolist()
    return done


def collecting_row(prompt_len: int = 3, **kwargs) -> tuple[Row, list[str], list[Row]]:
    pieces: list[str] = []
    finished: list[Row] = []
    row = Row([1] * prompt_len, on_text=pieces.append, on_finish=finished.append, **kwargs)
    return row, pieces, finished


def test_pieces_join_to_the_text_and_the_stop_token_ends_the_row(tokenizer):
    ids = tokenizer.encode("The capital of France is Paris.", add_special_tokens=False)
    row, pieces, finished = collecting_row(max_new_tokens=100)
    done = run(RowTracker([row], tokenizer, [END]), [[token] for token in ids + [END]])
    assert done == [True]
    assert "".join(pieces) == row.text == "The capital of France is Paris."
    assert row.finish_reason == "stop" and finished == [row]
    assert row.completion_tokens == len(ids) + 1  # the end token is generated too


def test_a_stop_string_cuts_the_text_and_is_never_sent(tokenizer):
    ids = tokenizer.encode("One two three. Observation: four", add_special_tokens=False)
    row, pieces, _ = collecting_row(max_new_tokens=100, stop=("Observation:",))
    tracker = RowTracker([row], tokenizer, [END])
    run(tracker, [[token] for token in ids])
    assert row.finish_reason == "stop"
    assert row.text == "".join(pieces) == "One two three. "
    assert not any("Obs" in piece for piece in pieces)


def test_text_that_may_begin_a_stop_string_is_held_back_then_released(tokenizer):
    ids = tokenizer.encode("Hello Obs world", add_special_tokens=False)
    row, pieces, _ = collecting_row(max_new_tokens=100, stop=("Observation:",))
    tracker = RowTracker([row], tokenizer, [END])
    run(tracker, [[token] for token in ids[:2]])  # "Hello Obs": might become the stop string
    assert "".join(pieces) == "Hello "
    run(tracker, [[token] for token in ids[2:]] + [[END]])
    assert "".join(pieces) == "Hello Obs world" and row.finish_reason == "stop"


def test_half_a_character_waits_for_its_other_bytes(tokenizer):
    ids = tokenizer.encode("猫", add_special_tokens=False)
    assert len(ids) > 1  # byte-level BPE spells this character in several tokens
    row, pieces, _ = collecting_row(max_new_tokens=100)
    run(RowTracker([row], tokenizer, [END]), [[token] for token in ids] + [[END]])
    assert pieces == ["猫"]


def test_each_row_keeps_its_own_limit_and_cancelled_rows_stop_silently(tokenizer):
    ids = tokenizer.encode(" a b c d e f", add_special_tokens=False)
    short, short_pieces, _ = collecting_row(max_new_tokens=2)
    long, _, _ = collecting_row(max_new_tokens=5)
    gone, gone_pieces, gone_finished = collecting_row(max_new_tokens=5, cancelled=True)
    tracker = RowTracker([short, long, gone], tokenizer, [END])
    done = run(tracker, [[token] * 3 for token in ids[:5]])
    assert done == [True, True, True]
    assert (short.finish_reason, short.completion_tokens) == ("length", 2)
    assert "".join(short_pieces) == tokenizer.decode(ids[:2])
    assert (long.finish_reason, long.completion_tokens) == ("length", 5)
    assert gone.finish_reason == "cancelled" and gone_pieces == [] and gone_finished == []


def test_finish_all_ends_rows_the_batch_limit_cut_off(tokenizer):
    ids = tokenizer.encode("Hello Obs", add_special_tokens=False)
    row, pieces, finished = collecting_row(max_new_tokens=100, stop=("Observation:",))
    tracker = RowTracker([row], tokenizer, [END])
    run(tracker, [[token] for token in ids])
    tracker.finish_all()
    assert row.finish_reason == "length" and "".join(pieces) == "Hello Obs" and finished == [row]
