"""One rendering path: named and tokenizer templates, loss masks, prefix checks, mismatch."""

from __future__ import annotations

import copy
import json

import pytest

from tuneforge.data import NAMED_TEMPLATES, Template, get_template, template_mismatch
from tuneforge.data.encode import encode_sample
from tuneforge.errors import ConfigError

IGNORE = -100
SINGLE = [{"role": "user", "content": "Hi there"}, {"role": "assistant", "content": "Hello!"}]
MULTI = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And 3 + 3?"},
    {"role": "assistant", "content": "It is 6."},
]


def encode(template, messages, tools=None, **flags) -> tuple[list[int], list[int]]:
    """(input_ids, labels) as training encodes a sample (`encode_sample`), nothing truncated."""
    tools_json = json.dumps(tools) if tools else None
    ids, labels, _ = encode_sample(template, messages, tools_json, cutoff_len=4096, **flags)
    return ids, labels


def trained_runs(tokenizer, ids, labels) -> list[str]:
    """The labelled tokens, decoded run by run (a run = consecutive labelled positions)."""
    runs, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    return [tokenizer.decode(run) for run in runs]


def test_single_turn_chatml_trains_only_the_reply_and_its_end_token(tokenizer):
    template = get_template(None, tokenizer)
    ids, labels = encode(template, SINGLE)
    assert trained_runs(tokenizer, ids, labels) == ["Hello!<|im_end|>"]
    # the tokens are those of the whole rendered text: training sees what serving renders
    assert ids == tokenizer(template.render(SINGLE), add_special_tokens=False)["input_ids"]


def test_multi_turn_trains_every_assistant_turn_and_nothing_else(tokenizer):
    template = get_template(None, tokenizer)
    ids, labels = encode(template, MULTI)
    assert trained_runs(tokenizer, ids, labels) == ["It is 4.<|im_end|>", "It is 6.<|im_end|>"]
    untrained = tokenizer.decode(
        [t for t, label in zip(ids, labels, strict=True) if label == IGNORE]
    )
    assert "Be brief." in untrained and "And 3 + 3?" in untrained and "It is" not in untrained


def test_mask_history_trains_only_the_last_turn(tokenizer):
    ids, labels = encode(get_template(None, tokenizer), MULTI, mask_history=True)
    assert trained_runs(tokenizer, ids, labels) == ["It is 6.<|im_end|>"]


def test_train_on_prompt_trains_every_token(tokenizer):
    ids, labels = encode(get_template(None, tokenizer), MULTI, train_on_prompt=True)
    assert labels == ids


def test_train_on_prompt_with_mask_history_trains_the_last_exchange(tokenizer):
    template = get_template(None, tokenizer)
    ids, labels = encode(template, MULTI, train_on_prompt=True, mask_history=True)
    assert trained_runs(tokenizer, ids, labels) == [
        "\n<|im_start|>user\nAnd 3 + 3?<|im_end|>\n<|im_start|>assistant\nIt is 6.<|im_end|>\n"
    ]


def test_encode_prompt_is_the_training_prefix_and_ends_with_the_assistant_header(tokenizer):
    template = get_template("chatml", tokenizer)
    prompt = template.encode_prompt(MULTI[:-1])
    ids, _ = encode(template, MULTI)
    assert ids[: len(prompt)] == prompt
    assert tokenizer.decode(prompt).endswith("And 3 + 3?<|im_end|>\n<|im_start|>assistant\n")


def test_default_system_is_added_only_when_a_sample_has_none(tokenizer):
    template = get_template("chatml", tokenizer, default_system="You are Ada.")
    assert template.render(SINGLE).startswith("<|im_start|>system\nYou are Ada.<|im_end|>\n")
    assert "You are Ada." not in template.render(MULTI)


def test_tokenizer_template_adds_its_own_system_prompt(tokenizer):
    assert "You are a helpful AI assistant named SmolLM" in get_template(None, tokenizer).render(
        SINGLE
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "chatml",
            "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n",
        ),
        (
            "qwen",
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful "
            "assistant.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n",
        ),
        (
            "llama3",
            "<|im_start|><|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>",
        ),
        (
            "alpaca",
            "Below is an instruction that describes a task. Write a response that "
            "appropriately completes the request.\n\n### Instruction:\nHi there\n\n"
            "### Response:\nHello!<|im_end|>\n\n",
        ),
        ("default", "Human: Hi there\nAssistant: Hello!<|im_end|>\n"),
        ("empty", "Hi thereHello!<|im_end|>"),
    ],
)
def test_named_templates_render_as_expected(tokenizer, name, expected):
    template = get_template(name, tokenizer)
    assert template.render(SINGLE) == expected
    ids, labels = encode(template, SINGLE)
    assert trained_runs(tokenizer, ids, labels)[-1].strip().startswith("Hello!")
    assert trained_runs(tokenizer, ids, labels)[-1].endswith(template.stop_words[0])


def test_named_templates_registry_is_immutable():
    with pytest.raises(TypeError):
        NAMED_TEMPLATES["mine"] = NAMED_TEMPLATES["chatml"]  # type: ignore[index]


def test_generation_prompts(tokenizer):
    assert (
        get_template("llama3", tokenizer)
        .render(SINGLE[:1], add_generation_prompt=True)
        .endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    )
    assert (
        get_template("default", tokenizer).render(SINGLE[:1], add_generation_prompt=True)
        == "Human: Hi there\nAssistant:"
    )


def test_qwen_renders_tools_and_tool_results(tokenizer):
    template = get_template("qwen", tokenizer)
    messages = [
        {"role": "user", "content": "2+2?"},
        {"role": "function", "content": '{"name": "add", "arguments": {"a": 2}}'},
        {"role": "observation", "content": "4"},
        {"role": "assistant", "content": "4."},
    ]
    text = template.render(messages, tools=[{"name": "add"}])
    assert '<tools>\n{"type": "function", "function": {"name": "add"}}\n</tools>' in text
    assert "<|im_start|>user\n<tool_response>\n4\n</tool_response><|im_end|>" in text
    ids, labels = encode(template, messages, tools=[{"name": "add"}])
    assert trained_runs(tokenizer, ids, labels) == [
        '<tool_call>\n{"name": "add", "arguments": {"a": 2}}\n</tool_call><|im_end|>',
        "4.<|im_end|>",
    ]


def test_stop_token_ids(tokenizer):
    assert get_template("chatml", tokenizer).stop_token_ids == (tokenizer.eos_token_id,)
    llama3 = get_template("llama3", tokenizer)
    assert llama3.stop_words == ("<|eot_id|>", "<|im_end|>")
    assert llama3.stop_token_ids == (tokenizer.eos_token_id,)  # <|eot_id|> is not one token here


def test_unknown_template_name_suggests_and_lists(tokenizer):
    with pytest.raises(ConfigError) as caught:
        get_template("chatlm", tokenizer)
    assert str(caught.value).startswith(
        "template: unknown template 'chatlm'; did you mean "
        "'chatml'? choose one of chatml, qwen, llama3"
    )


def test_tokenizer_without_template_needs_a_name(tokenizer):
    bare = copy.deepcopy(tokenizer)
    bare.chat_template = None
    with pytest.raises(ConfigError) as caught:
        get_template(None, bare)
    assert str(caught.value) == (
        "template: the tokenizer has no chat template of its own; set "
        "template to one of chatml, qwen, llama3, alpaca, default, empty"
    )


def test_template_that_rewrites_history_is_refused(tokenizer):
    # renders an assistant reply only when it is the last message (like reasoning stripping)
    source = (
        "{% for m in messages %}{% if m.role != 'assistant' or loop.last %}"
        "{{ m.role + ': ' + m.content + '<|im_end|>' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    template = Template("odd", source, ("<|im_end|>",), tokenizer)
    encode(template, SINGLE)
    with pytest.raises(ConfigError) as caught:
        encode(template, MULTI)
    assert str(caught.value).startswith("template 'odd' is not prefix-stable")


def test_template_without_a_stop_word_is_refused(tokenizer):
    source = "{% for m in messages %}{{ m.content + '\\n' }}{% endfor %}"
    with pytest.raises(ConfigError) as caught:
        encode(Template("plain", source, ("<|im_end|>",), tokenizer), SINGLE)
    assert "does not end with a stop word ('<|im_end|>')" in str(caught.value)


def test_mismatch_warns_for_a_foreign_template(tokenizer):
    warning = template_mismatch(get_template("llama3", tokenizer), tokenizer)
    assert warning is not None and warning.startswith(
        "template 'llama3' renders conversations differently from the tokenizer's own"
    )
    assert "\n" not in warning


def test_mismatch_is_silent_for_the_tokenizer_own_template(tokenizer):
    assert template_mismatch(get_template(None, tokenizer), tokenizer) is None


def test_mismatch_points_at_the_missing_default_system_prompt(tokenizer):
    warning = template_mismatch(get_template("chatml", tokenizer), tokenizer)
    assert warning is not None
    assert "without a system prompt" in warning and "default_system" in warning
    fixed = get_template("chatml", tokenizer, default_system="You are Ada.")
    assert template_mismatch(fixed, tokenizer) is None
