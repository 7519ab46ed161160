"""A client that hangs up stops its generation, streaming or not, so nobody queues behind it.

The model is `SlowChat` (conftest.py): LONG tokens would take LONG * STEP_S = 30 s, so a row
that ends within seconds was cancelled, not finished.
"""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from serve_helpers import STEP_S, eventually

LONG = int(30 / STEP_S)


def ask(url: str, max_tokens: int, **kwargs) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/chat/completions",
        **kwargs,
        json={
            "model": "slow",
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hi"}],
        },
    )


def hang_up(url: str, after_s: float) -> None:
    with pytest.raises(httpx.ReadTimeout):
        ask(url, LONG, timeout=after_s)


def _generated_text(line: str) -> str:
    if not line.startswith("data: {"):
        return ""
    [choice] = json.loads(line.removeprefix("data: "))["choices"]
    return choice["delta"].get("content", "")


def idle(url: str) -> bool:
    health = httpx.get(f"{url}/health").json()
    return health["running"] == 0 and health["waiting"] == 0


def test_a_non_streaming_client_that_hangs_up_stops_its_generation(slow_server):
    hang_up(slow_server.url, after_s=1)
    [row] = slow_server.chat.batches[0]
    assert eventually(lambda: row.finish_reason is not None, timeout=5)
    assert row.finish_reason == "cancelled" and row.completion_tokens < LONG / 3
    assert eventually(lambda: idle(slow_server.url))
    reply = ask(slow_server.url, 3, timeout=10)  # the batch slot is free again
    assert reply.status_code == 200 and reply.json()["choices"][0]["finish_reason"] == "length"


def test_a_request_that_hangs_up_while_waiting_is_never_generated(slow_server):
    first = threading.Thread(target=hang_up, args=(slow_server.url, 3))
    first.start()
    assert eventually(lambda: slow_server.chat.batches)  # the first runs; one row per batch
    hang_up(slow_server.url, after_s=0.5)  # waits behind the first, then hangs up
    first.join()
    assert eventually(lambda: idle(slow_server.url))
    assert len(slow_server.chat.batches) == 1


def test_a_streaming_client_that_hangs_up_stops_its_generation(slow_server):
    body = {
        "model": "slow",
        "max_tokens": LONG,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    with httpx.stream(
        "POST", f"{slow_server.url}/v1/chat/completions", json=body, timeout=10
    ) as reply:
        # The role comes before the batch starts; hang up once a generated piece has arrived.
        next(line for line in reply.iter_lines() if _generated_text(line))
    [row] = slow_server.chat.batches[0]
    assert eventually(lambda: row.finish_reason is not None, timeout=5)
    assert row.finish_reason == "cancelled" and row.completion_tokens < LONG / 3
