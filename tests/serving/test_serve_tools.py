"""Tool calls through the OpenAI-compatible server, spoken to by the official `openai` client.

A random tiny model never writes a valid call, so this module first trains one that does: the
tiny model, fully fine-tuned for a few seconds on three conversations (with tools: a weather
question answered by a call, then the tool's result answered in words; without tools: the same
question answered in words). A real `tuneforge api` process serves it, and every reply below
is what that model generates greedily, read by the server.
"""

from __future__ import annotations

import json

import httpx
import openai
import pytest

import tuneforge

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
CONVERT = {
    "type": "function",
    "function": {
        "name": "convert_units",
        "description": "Convert a value between units.",
        "parameters": {
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "from_unit": {"type": "string"},
                "to_unit": {"type": "string"},
            },
            "required": ["value", "from_unit", "to_unit"],
        },
    },
}
TOOLS = [WEATHER, CONVERT]
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
RESULT = '{"temperature": 18, "condition": "cloudy"}'
ANSWER = "It is 18 degrees and cloudy in Paris."
NO_TOOL_ANSWER = "I cannot check the weather."


@pytest.fixture(scope="module")
def tool_model_dir(tiny_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tool-model")
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
    }
    rows = [
        {
            "messages": [
                QUESTION,
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "call_1", "content": RESULT},
                {"role": "assistant", "content": ANSWER},
            ],
            "tools": json.dumps(TOOLS),
        },
        {"messages": [QUESTION, {"role": "assistant", "content": NO_TOOL_ANSWER}]},
    ]
    (folder / "calls.json").write_text(json.dumps(rows))
    (folder / "dataset_info.json").write_text(
        json.dumps({"calls": {"file_name": "calls.json", "formatting": "openai"}})
    )
    result = tuneforge.train(
        {
            "model_name_or_path": str(tiny_model_dir),
            "dataset": "calls",
            "dataset_dir": str(folder),
            "cutoff_len": 512,
            "packing": False,  # the two answers to one question, each in its own row
            "output_dir": str(folder / "out"),
            "finetuning_type": "full",
            "per_device_train_batch_size": 2,
            "learning_rate": 3e-2,
            "lr_scheduler_type": "constant",
            "num_train_epochs": 60,
            "save_strategy": "no",
            "report_to": "none",
            "seed": 0,
        }
    )
    return result.output_dir


@pytest.fixture(scope="module")
def tool_server(serve_model, tool_model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    with serve_model(tool_model_dir, folder, max_prompt_tokens=600) as up:
        yield up


@pytest.fixture(scope="module")
def client(tool_server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{tool_server.url}/v1", api_key=tool_server.api_key, max_retries=0, timeout=120
    )


def ask(client: openai.OpenAI, messages=(QUESTION,), **kwargs):
    return client.chat.completions.create(
        model="tiny", messages=list(messages), temperature=0, max_tokens=48, **kwargs
    )


def test_a_call_comes_back_as_tool_calls(client):
    choice = ask(client, tools=TOOLS).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_the_client_puts_a_streamed_call_together(client):
    with client.chat.completions.stream(
        model="tiny", messages=[QUESTION], tools=TOOLS, temperature=0, max_tokens=48
    ) as stream:
        events = list(stream)
        final = stream.get_final_completion()
    choice = final.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # Nothing of the call leaked out as text while it was generated.
    assert not any(e.type == "content.delta" and "tool_call" in e.delta for e in events)


def test_streamed_deltas_add_up_as_the_openai_docs_accumulate_them(client):
    calls: dict[int, dict] = {}
    text, reasons = "", []
    for chunk in ask(client, tools=TOOLS, stream=True):
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for piece in delta.tool_calls or ():
            call = calls.setdefault(piece.index, {"id": "", "name": "", "arguments": ""})
            call["id"] += piece.id or ""
            call["name"] += piece.function.name or ""
            call["arguments"] += piece.function.arguments or ""
        reasons += [chunk.choices[0].finish_reason] if chunk.choices[0].finish_reason else []
    assert text == "" and reasons == ["tool_calls"]
    assert list(calls) == [0] and calls[0]["name"] == "get_weather"
    assert calls[0]["id"].startswith("call_")
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}


def test_the_tool_result_goes_back_and_the_model_answers_in_words(client):
    first = ask(client, tools=TOOLS).choices[0].message
    call = first.tool_calls[0]
    messages = [
        QUESTION,
        first,  # the response's message object, sent back as the OpenAI docs do
        {"role": "tool", "tool_call_id": call.id, "content": RESULT},
    ]
    choice = ask(client, messages, tools=TOOLS).choices[0]
    assert choice.message.content == ANSWER and choice.message.tool_calls is None
    assert choice.finish_reason == "stop"
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in ask(client, messages, tools=TOOLS, stream=True)
        if chunk.choices
    )
    assert streamed == ANSWER


def test_tool_choice_none_hides_the_tools_and_answers_in_text(client):
    choice = ask(client, tools=TOOLS, tool_choice="none").choices[0]
    assert choice.message.content == NO_TOOL_ANSWER  # what it learnt to say without tools
    assert choice.message.tool_calls is None and choice.finish_reason == "stop"


@pytest.mark.parametrize(
    ("tool_choice", "name"),
    [
        ({"type": "function", "function": {"name": "convert_units"}}, "convert_units"),
        ("required", "get_weather"),
    ],
)
def test_a_required_or_named_tool_choice_makes_the_reply_a_call(client, tool_choice, name):
    choice = ask(client, tools=TOOLS, tool_choice=tool_choice).choices[0]
    assert choice.finish_reason == "tool_calls"
    assert [call.function.name for call in choice.message.tool_calls] == [name]
    json.loads(choice.message.tool_calls[0].function.arguments)


def test_each_of_n_choices_is_read_on_its_own(client):
    answer = ask(client, tools=TOOLS, n=2, parallel_tool_calls=False)
    ids = [choice.message.tool_calls[0].id for choice in answer.choices]
    assert [choice.finish_reason for choice in answer.choices] == ["tool_calls"] * 2
    assert len(set(ids)) == 2


CALLED = {
    "role": "assistant",
    "content": None,
    "tool_calls": [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
    ],
}


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tools": None, "tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        (
            {"tools": [{"type": "function", "function": {"description": "x"}}]},
            "tools.0.function.name",
        ),
        ({"tools": [{"type": "retrieval"}]}, "tools.0.type"),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        (
            {"messages": [QUESTION, {"role": "tool", "tool_call_id": "c", "content": "1"}]},
            "messages.1",
        ),
        (
            {
                "messages": [
                    QUESTION,
                    {
                        **CALLED,
                        "tool_calls": [
                            {
                                **CALLED["tool_calls"][0],
                                "function": {"name": "get_weather", "arguments": "{city: Paris"},
                            }
                        ],
                    },
                ]
            },
            "messages.1.tool_calls",
        ),
        (
            {
                "messages": [
                    QUESTION,
                    CALLED,
                    {"role": "tool", "tool_call_id": "call_b", "content": "1"},
                ]
            },
            "messages.2.tool_call_id",
        ),
        (
            {"messages": [QUESTION, CALLED, {"role": "tool", "content": "1"}]},
            "messages.2.tool_call_id",
        ),
        ({"messages": [QUESTION, {"role": "assistant", "content": None}]}, "messages.1.content"),
    ],
)
def test_bad_tool_requests_get_400_naming_the_param(tool_server, change, param):
    body = {"model": "t", "messages": [QUESTION], "tools": TOOLS, **change}
    reply = httpx.post(
        f"{tool_server.url}/v1/chat/completions",
        headers=tool_server.headers,
        json={key: value for key, value in body.items() if value is not None},
    )
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param, error


def test_the_client_raises_bad_request_naming_the_param(client):
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}})
    assert caught.value.param == "tool_choice" and "'nope'" in caught.value.message
