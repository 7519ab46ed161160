"""The OpenAI-compatible server, spoken to by the official `openai` client and by raw HTTP.

One real `tuneforge api` process (tiny adapter, --max-batch 4, --max-waiting 8,
--max-request-bytes 16384) serves the whole module; see conftest.py.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]
LOAD_REQUESTS = 200


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{server.url}/v1", api_key=server.api_key, max_retries=0, timeout=120
    )


def test_a_completion_has_the_choice_usage_and_finish_reason(client):
    answer = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=6, temperature=0
    )
    choice = answer.choices[0]
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    assert 1 <= answer.usage.completion_tokens <= 6
    assert answer.usage.prompt_tokens > 5
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_the_stream_carries_the_same_text_as_the_completion(client):
    whole = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=8, temperature=0
    )
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=MESSAGES,
            max_tokens=8,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    reasons = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert reasons == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_n_choices_and_a_stop_string(client):
    first = (
        client.chat.completions.create(
            model="tiny", messages=MESSAGES, max_tokens=12, temperature=0
        )
        .choices[0]
        .message.content
    )
    stop = first[len(first) // 2 : len(first) // 2 + 3]
    assert stop.strip()
    answer = client.chat.completions.create(
        model="tiny", messages=MESSAGES, max_tokens=12, temperature=0, n=2, stop=[stop]
    )
    assert [c.index for c in answer.choices] == [0, 1]
    for choice in answer.choices:
        assert choice.finish_reason == "stop"
        assert choice.message.content == first[: first.index(stop)]


def test_models_and_health(client, server, tiny_adapter_dir):
    assert [m.id for m in client.models.list().data] == [tiny_adapter_dir.name]
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and {"running", "waiting"} <= health.keys()


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic test-secret"}]
)
def test_a_missing_or_wrong_key_is_refused_with_401(server, headers):
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        headers=headers,
        json={"model": "tiny", "messages": MESSAGES},
    )
    assert reply.status_code == 401
    assert reply.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("oversized", [False, True])
def test_the_key_is_checked_before_the_body_is_read(server, oversized):
    body = b"x" * (4 * server.max_request_bytes) if oversized else b'{"model": "t", "messa'
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=body,
        headers={"Authorization": "Bearer wrong", "Content-Type": "application/json"},
    )
    assert reply.status_code == 401, reply.text  # not 400 (invalid JSON) nor 413 (too large)
    assert reply.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_size_limit_gets_413(server, chunked):
    raw = json.dumps(
        {"model": "t", "messages": [{"role": "user", "content": "x" * server.max_request_bytes}]}
    ).encode()
    pieces = [raw[at : at + 4096] for at in range(0, len(raw), 4096)]
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=iter(pieces) if chunked else raw,
        headers={**server.headers, "Content-Type": "application/json"},
    )
    assert ("content-length" in reply.request.headers) is not chunked
    assert reply.status_code == 413, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "request_too_large"
    assert str(server.max_request_bytes) in error["message"]


def test_the_openai_client_sees_the_401_as_an_authentication_error(server):
    wrong = openai.OpenAI(base_url=f"{server.url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="tiny", messages=MESSAGES)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"model": "t", "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"model": "t", "messages": []}, "messages"),
        ({"model": "t", "messages": MESSAGES, "max_tokens": 10**9}, "max_tokens"),
        ({"model": "t", "messages": MESSAGES, "max_tokens": "5"}, "max_tokens"),
        ({"model": "t", "messages": MESSAGES, "temperature": 3}, "temperature"),
        ({"model": "t", "messages": MESSAGES, "n": 5}, "n=5"),
        ({"model": "t", "messages": MESSAGES, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": "t", "messages": MESSAGES, "temprature": 0.5}, "unknown parameter 'temprature'"),
        ({"messages": MESSAGES}, "model"),
        ({"model": "t", "messages": [{"role": "user", "content": "word " * 400}]}, "200"),
    ],
)
def test_invalid_requests_get_400_naming_the_field(server, body, names):
    reply = httpx.post(f"{server.url}/v1/chat/completions", headers=server.headers, json=body)
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["type"] == "invalid_request_error" and names in error["message"]


def test_malformed_json_gets_400_and_the_server_keeps_working(server, client):
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        content=b'{"model": "t", "messa',
        headers={**server.headers, "Content-Type": "application/json"},
    )
    assert reply.status_code == 400
    assert "not valid JSON" in reply.json()["error"]["message"]
    assert client.chat.completions.create(model="t", messages=MESSAGES, max_tokens=2).choices


def test_unknown_routes_answer_in_openai_error_format(server):
    reply = httpx.get(f"{server.url}/v1/nothing-here", headers=server.headers)
    assert reply.status_code == 404 and "error" in reply.json()


def test_200_concurrent_requests_are_answered_or_refused_with_429(server, client):
    async def one(http: httpx.AsyncClient, i: int) -> httpx.Response:
        return await http.post(
            "/v1/chat/completions",
            json={
                "model": "t",
                "max_tokens": 8,
                "stream": i % 2 == 1,
                "messages": [{"role": "user", "content": f"Question {i}: what is {i} + {i}?"}],
            },
        )

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=LOAD_REQUESTS)
        async with httpx.AsyncClient(
            base_url=server.url, headers=server.headers, limits=limits, timeout=httpx.Timeout(300)
        ) as http:
            return await asyncio.gather(*(one(http, i) for i in range(LOAD_REQUESTS)))

    replies = asyncio.run(burst())
    codes = [reply.status_code for reply in replies]
    assert set(codes) <= {200, 429}, sorted(set(codes))
    answered = [reply for reply in replies if reply.status_code == 200]
    refused = [reply for reply in replies if reply.status_code == 429]
    assert len(answered) >= server.max_batch and refused  # the queue is small
    assert len(answered) < LOAD_REQUESTS
    for reply in refused:
        assert reply.json()["error"]["code"] == "rate_limit_exceeded"
        assert reply.headers["retry-after"]
    for reply in answered:
        if reply.headers["content-type"].startswith("text/event-stream"):
            assert reply.text.rstrip().endswith("data: [DONE]")
        else:
            assert json.loads(reply.text)["choices"][0]["message"]["content"] is not None
    health = httpx.get(f"{server.url}/health").json()
    assert health["waiting"] <= server.max_waiting
    assert client.chat.completions.create(model="t", messages=MESSAGES, max_tokens=2).choices
