"""Truncation keeps the response, counts what it did; pt chunking loses no token."""

from __future__ import annotations

import datasets

from tuneforge.data import get_template
from tuneforge.data.encode import encode_conversations, encode_sample, encode_texts

IGNORE = -100


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def trained_text(tokenizer, ids, labels) -> str:
    return tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE])


def test_short_samples_are_untouched(tokenizer):
    template = get_template("chatml", tokenizer)
    messages = [user("Hi"), assistant("Hello!")]
    ids, labels, length = encode_sample(template, messages, None, cutoff_len=64)
    assert ids == tokenizer(template.render(messages), add_special_tokens=False)["input_ids"]
    assert trained_text(tokenizer, ids, labels) == "Hello!<|im_end|>"
    assert length == len(ids)


def test_long_prompt_is_cut_in_the_middle_keeping_the_response(tokenizer):
    template = get_template("chatml", tokenizer)
    messages = [user("START " + "blah " * 200 + "END"), assistant("The answer is 42.")]
    ids, labels, length = encode_sample(template, messages, None, cutoff_len=48)
    assert len(ids) == 48 and length > 200
    assert trained_text(tokenizer, ids, labels) == "The answer is 42.<|im_end|>"
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>user\nSTART")
    assert "END" not in text
    assert text.endswith("<|im_end|>\n<|im_start|>assistant\nThe answer is 42.<|im_end|>")


def test_oldest_exchanges_are_dropped_before_the_prompt_is_cut(tokenizer):
    template = get_template("chatml", tokenizer)
    messages = [
        {"role": "system", "content": "Be brief."},
        user("old " * 40),
        assistant("old answer"),
        user("middle question"),
        assistant("middle answer"),
        user("last question"),
        assistant("last answer"),
    ]
    ids, labels, _ = encode_sample(template, messages, None, cutoff_len=40)
    text = tokenizer.decode(ids)
    assert "old" not in text and "Be brief." in text and "middle question" in text
    assert trained_text(tokenizer, ids, labels) == "middle answer<|im_end|>last answer<|im_end|>"
    assert len(ids) <= 40


def test_response_is_cut_only_when_it_alone_does_not_fit(tokenizer):
    template = get_template("chatml", tokenizer)
    messages = [user("Write a lot."), assistant("word " * 100)]
    ids, labels, _ = encode_sample(template, messages, None, cutoff_len=32)
    prompt_length = len(template.encode_prompt(messages[:1]))
    assert len(ids) == 32
    assert ids[:prompt_length] == template.encode_prompt(messages[:1])  # the prompt is whole
    assert trained_text(tokenizer, ids, labels).startswith("word word")


def test_truncated_and_dropped_samples_are_counted(tokenizer):
    template = get_template("chatml", tokenizer)
    rows = datasets.Dataset.from_list(
        [
            {"messages": [user("short"), assistant("ok")], "tools": None},
            {"messages": [user("long " * 100), assistant("ok")], "tools": None},
            {"messages": [user("also long " * 50), assistant("ok")], "tools": None},
        ]
    )
    encoded, report = encode_conversations(
        rows,
        template,
        cutoff_len=32,
        train_on_prompt=False,
        mask_history=False,
        num_proc=None,
        load_from_cache_file=False,
    )
    assert (report.samples, report.truncated, report.dropped) == (3, 2, 0)
    assert encoded.column_names == ["input_ids", "labels"]
    assert max(len(ids) for ids in encoded["input_ids"]) == 32
    assert report.lengths[1] > 100
    assert report.tokens == sum(len(ids) for ids in encoded["input_ids"])
    assert report.trained_tokens == sum(
        1 for labels in encoded["labels"] for label in labels if label != IGNORE
    )


def test_pt_chunks_lose_no_token_and_empty_texts_are_dropped(tokenizer):
    text = " ".join(f"token{i}" for i in range(60))
    rows = datasets.Dataset.from_dict({"text": [text, "", "short one"]})
    encoded, report = encode_texts(
        rows, tokenizer, cutoff_len=16, num_proc=None, load_from_cache_file=False
    )
    eos = tokenizer.eos_token_id
    expected = tokenizer(text)["input_ids"] + [eos] + tokenizer("short one")["input_ids"] + [eos]
    assert [t for ids in encoded["input_ids"] for t in ids] == expected
    assert all(len(ids) <= 16 for ids in encoded["input_ids"])
    assert encoded["labels"] == encoded["input_ids"]
    assert (report.samples, report.truncated, report.dropped) == (3, 1, 1)
    assert report.tokens == len(expected)
