"""Tool calls: read from both data forms, rendered per model family, parsed back, checked
against their JSON schema; bad call data names the file, row and message."""

from __future__ import annotations

import json

import pytest
from test_data_formats import read, read_error

from tuneforge.data import get_template
from tuneforge.data.encode import encode_sample
from tuneforge.data.tools import (
    HERMES,
    JSON_CALLS,
    ToolCall,
    ToolError,
    read_calls,
    schema_problems,
)
from tuneforge.errors import DataError

WEATHER = {
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city"],
    },
}
CALC = {
    "name": "calculate",
    "parameters": {
        "type": "object",
        "properties": {"expression": {"type": "string"}},
        "required": ["expression"],
    },
}
TOOLS = [WEATHER, CALC]


def test_calls_read_from_llamafactory_and_openai_forms_alike():
    lf = read_calls('{"name": "get_weather", "arguments": {"city": "巴黎"}}', TOOLS)
    openai = read_calls(
        [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "巴黎"}'},
            }
        ],
        [{"type": "function", "function": WEATHER}],
    )
    assert lf == openai == [ToolCall("get_weather", {"city": "巴黎"})]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ('{"name": "get_weather", "arguments": {"city": ', "is not valid JSON"),
        ('{"name": "send_mail", "arguments": {}}', "calls 'send_mail', which is not in the"),
        ('{"arguments": {}}', "has no function 'name'"),
        ('{"name": "calculate", "arguments": [1, 2]}', "arguments must be a JSON object"),
        ('{"name": "calculate", "arguments": "{1"}', "arguments are not valid JSON"),
        ("[]", "holds no call"),
    ],
)
def test_bad_calls_say_what_is_wrong(value, says):
    with pytest.raises(ToolError, match=says):
        read_calls(value, TOOLS)


@pytest.mark.parametrize("fmt", [HERMES, JSON_CALLS])
def test_each_format_parses_what_it_renders(fmt):
    calls = [
        ToolCall("get_weather", {"city": "Paris", "unit": "celsius"}),
        ToolCall("calculate", {"expression": "2 * (3 + 4)"}),
    ]
    parsed = fmt.parse(fmt.render_calls(calls))
    assert parsed.calls == tuple(calls) and parsed.error is None


def test_hermes_parse_tolerates_whitespace_and_a_missing_close_but_not_bad_json():
    loose = 'Let me check.\n<tool_call>  {"name":"get_weather","arguments":{"city":"Oslo"}}  '
    parsed = HERMES.parse(loose)
    assert parsed.content == "Let me check."
    assert parsed.calls == (ToolCall("get_weather", {"city": "Oslo"}),)
    broken = HERMES.parse('<tool_call>\n{"name": "get_weather", "arguments": {city: Oslo}}\n')
    assert broken.calls == () and "not valid JSON" in (broken.error or "")
    assert HERMES.parse("It is sunny.") == HERMES.parse("  It is sunny. ")
    assert HERMES.parse("It is sunny.").calls == ()


def test_json_format_reads_llama_parameters_and_leaves_prose_alone():
    parsed = JSON_CALLS.parse(
        '<|python_tag|>{"name": "calculate", "parameters": {"expression": "1 + 1"}}'
    )
    assert parsed.calls == (ToolCall("calculate", {"expression": "1 + 1"}),)
    assert JSON_CALLS.parse("The answer is 2.").calls == ()
    assert JSON_CALLS.parse('{"name": "calculate", "parameters": ').error


def test_call_prefix_starts_a_call_the_parser_completes():
    for fmt in (HERMES, JSON_CALLS):
        args = "parameters" if fmt is JSON_CALLS else "arguments"
        text = fmt.call_prefix("calculate") + '{"expression": "2 + 2"}}'
        if fmt is HERMES:
            text += "\n</tool_call>"
        assert fmt.parse(text).calls == (ToolCall("calculate", {"expression": "2 + 2"}),), args


def test_schema_problems_name_each_fault():
    assert schema_problems(ToolCall("get_weather", {"city": "Rome"}), TOOLS) == []
    problems = schema_problems(
        ToolCall("get_weather", {"unit": "kelvin", "days": 3}),
        [{"type": "function", "function": WEATHER}],
    )
    assert problems == [
        "missing argument 'city'",
        "'unit': \"kelvin\" is not one of ['celsius', 'fahrenheit']",
        "unexpected argument 'days'",
    ]
    assert schema_problems(ToolCall("calculate", {"expression": 4}), TOOLS) == [
        "'expression': expected string, got 4"
    ]
    assert schema_problems(ToolCall("nope", {}), TOOLS) == ["unknown function 'nope'"]


def test_a_template_without_tool_syntax_lists_tools_in_the_system_prompt(tokenizer):
    template = get_template(None, tokenizer)  # SmolLM2's ChatML has no tool syntax
    assert not template.renders_tools and template.tool_format is HERMES
    messages = [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "function", "content": '[{"name": "get_weather", "arguments": {"city": "Oslo"}}]'},
        {"role": "observation", "content": '{"temp": 3}'},
        {"role": "assistant", "content": "3 degrees."},
    ]
    text = template.render(messages, tools=TOOLS)
    assert text.startswith("<|im_start|>system\nYou can call functions")
    assert json.dumps({"type": "function", "function": WEATHER}) in text
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>' in text
    )
    # Both assistant-side turns train: the call and the final answer.
    ids, labels, _ = encode_sample(template, messages, json.dumps(TOOLS), cutoff_len=4096)
    trained = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != -100])
    assert trained == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
        "<|im_end|>3 degrees.<|im_end|>"
    )
    # The prompt chat and the API build for the next turn is what training saw.
    prompt = template.encode_prompt(messages[:1], tools=TOOLS)
    assert ids[: len(prompt)] == prompt


def test_llama3_writes_calls_as_json(tokenizer):
    template = get_template("llama3", tokenizer)
    assert template.tool_format is JSON_CALLS
    text = template.render(
        [
            {"role": "user", "content": "2+2"},
            {
                "role": "function",
                "content": '{"name": "calculate", "arguments": {"expression": "2 + 2"}}',
            },
        ],
        tools=TOOLS,
    )
    assert '{"name": "calculate", "parameters": {"expression": "2 + 2"}}<|eot_id|>' in text


def test_function_call_rows_are_checked_and_stored_canonically(make_data, make_config):
    row = {
        "tools": json.dumps([WEATHER]),
        "conversations": [
            {"from": "human", "value": "Oslo weather?"},
            {
                "from": "function_call",
                "value": '{"name":"get_weather","arguments":{"city":"Oslo"}}',
            },
            {"from": "observation", "value": "3C"},
            {"from": "gpt", "value": "3 degrees."},
        ],
    }
    folder = make_data({"x": {"file_name": "x.json", "formatting": "sharegpt"}}, {"x.json": [row]})
    [read_row] = read(folder, make_config)[0]
    assert json.loads(read_row["messages"][1]["content"]) == [
        {"name": "get_weather", "arguments": {"city": "Oslo"}}
    ]


@pytest.mark.parametrize(
    ("turns", "says"),
    [
        (
            [
                ("human", "Hi"),
                ("function_call", '{"name": "get_weather", "arguments": {"city"'),
                ("observation", "x"),
                ("gpt", "y"),
            ],
            "x.json: row 1: conversations[1]: the function call is not valid JSON",
        ),
        (
            [
                ("human", "Hi"),
                ("function_call", '{"name": "book_taxi", "arguments": {}}'),
                ("observation", "x"),
                ("gpt", "y"),
            ],
            "x.json: row 1: conversations[1]: the function call calls 'book_taxi', which is "
            "not in the row's tools (get_weather)",
        ),
        (
            [("human", "Hi"), ("gpt", "Hello"), ("observation", "x"), ("gpt", "y")],
            "x.json: row 1: conversations[2] is a tool result ('observation') with no function "
            "call before it",
        ),
    ],
)
def test_bad_function_call_rows_name_file_row_and_message(make_data, make_config, turns, says):
    row = {
        "tools": json.dumps([WEATHER]),
        "conversations": [{"from": role, "value": value} for role, value in turns],
    }
    folder = make_data({"x": {"file_name": "x.json", "formatting": "sharegpt"}}, {"x.json": [row]})
    assert says in read_error(folder, make_config)


def test_openai_tool_calls_and_several_tool_results_become_one_exchange(make_data, make_config):
    calls = [
        {
            "id": "a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
        },
        {
            "id": "b",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        },
    ]
    row = {
        "tools": [{"type": "function", "function": WEATHER}],
        "messages": [
            {"role": "user", "content": "Oslo and Rome?"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "a", "content": "3C"},
            {"role": "tool", "tool_call_id": "b", "content": "20C"},
            {"role": "assistant", "content": "Cold and warm."},
        ],
    }
    folder = make_data({"x": {"file_name": "x.json", "formatting": "openai"}}, {"x.json": [row]})
    [read_row] = read(folder, make_config)[0]
    assert [m["role"] for m in read_row["messages"]] == [
        "user",
        "function",
        "observation",
        "assistant",
    ]
    assert [c["arguments"]["city"] for c in json.loads(read_row["messages"][1]["content"])] == [
        "Oslo",
        "Rome",
    ]
    assert read_row["messages"][2]["content"] == "3C\n20C"


def test_openai_text_beside_tool_calls_is_refused(make_data, make_config):
    row = {
        "tools": [WEATHER],
        "messages": [
            {"role": "user", "content": "Oslo?"},
            {
                "role": "assistant",
                "content": "Checking.",
                "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "content": "3C"},
            {"role": "assistant", "content": "3C."},
        ],
    }
    folder = make_data({"x": {"file_name": "x.json", "formatting": "openai"}}, {"x.json": [row]})
    with pytest.raises(DataError, match=r"row 1: messages\[1\] has both text and tool_calls"):
        read(folder, make_config)


def test_a_call_prefix_tokenises_as_the_start_of_the_trained_call(tokenizer):
    """Prefilling `tool_choice` must not give the model tokens training never produced."""
    call = HERMES.render_calls([ToolCall("calculate", {"expression": "2 + 2"})])
    trained = tokenizer(call, add_special_tokens=False)["input_ids"]
    for name in (None, "calculate"):
        prefix = tokenizer(HERMES.call_prefix(name), add_special_tokens=False)["input_ids"]
        assert trained[: len(prefix)] == prefix, name


def test_tool_format_overrides_the_family_and_a_format_not_built_is_refused(tokenizer, tmp_path):
    from tuneforge.config import load_config
    from tuneforge.errors import ConfigError

    template = get_template("chatml", tokenizer, tool_format="llama3")
    call = '[{"name": "calculate", "arguments": {"expression": "1 + 1"}}]'
    text = template.render(
        [{"role": "user", "content": "1+1"}, {"role": "function", "content": call}]
    )
    assert '{"name": "calculate", "parameters": {"expression": "1 + 1"}}<|im_end|>' in text
    config = tmp_path / "run.yaml"
    config.write_text("model_name_or_path: smollm2-135m-instruct\ntool_format: glm4\n")
    with pytest.raises(
        ConfigError, match="tool_format='glm4': allowed: qwen, hermes, llama3, json"
    ):
        load_config(config)
