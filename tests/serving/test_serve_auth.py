"""`tuneforge api` and its key: an empty key is refused; without a key the server is open to
this machine only, unless --no-auth says an open server is meant.

The model load and uvicorn are replaced by fakes, so each test checks what the command decides
in a second and then talks to the app it would have served.
"""

from __future__ import annotations

import logging

import pytest
import uvicorn
from serve_helpers import SlowChat
from starlette.testclient import TestClient

from tuneforge.cli import main
from tuneforge.serving import api

ASK = {"model": "slow", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def served(monkeypatch) -> dict:
    """What `uvicorn.run` was given, once `tuneforge api` gets that far."""
    given: dict = {}
    monkeypatch.delenv("TUNEFORGE_API_KEY", raising=False)
    monkeypatch.setattr(api, "load_chat_model", lambda cfg: SlowChat())
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: given.update(app=app, **kwargs))
    return given


@pytest.mark.parametrize(
    ("argv", "env", "says"),
    [
        (["--api-key", ""], None, "the API key is empty"),
        (["--api-key", "  "], None, "the API key is empty"),
        ([], "", "the API key is empty"),
        (["--no-auth", "--api-key", "secret"], None, "contradict"),
        (["--no-auth"], "secret", "contradict"),
        (["--host", "0.0.0.0"], None, "without an API key"),
    ],
)
def test_an_unsafe_key_setting_is_refused_with_one_line(
    served, monkeypatch, capsys, argv, env, says
):
    if env is not None:
        monkeypatch.setenv("TUNEFORGE_API_KEY", env)
    assert main(["api", "--port", "0", *argv]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tuneforge: error: ") and says in lines[0]
    assert not served  # refused before the model loads


def test_no_auth_serves_without_a_key_and_warns(served, caplog):
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        assert main(["api", "--port", "0", "--no-auth"]) == 0
    assert "authentication is off (--no-auth)" in caplog.text
    with TestClient(served["app"]) as client:
        assert client.post("/v1/chat/completions", json=ASK).status_code == 200


def test_no_key_on_loopback_serves_with_a_warning(served, caplog):
    with caplog.at_level(logging.WARNING, logger="tuneforge"):
        assert main(["api", "--port", "0"]) == 0
    assert "no API key" in caplog.text and served["host"] == "127.0.0.1"


def test_a_key_from_the_environment_is_required(served, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_API_KEY", "from-env")
    assert main(["api", "--port", "0"]) == 0
    with TestClient(served["app"]) as client:
        assert client.post("/v1/chat/completions", json=ASK).status_code == 401
        assert (
            client.post(
                "/v1/chat/completions", json=ASK, headers={"Authorization": "Bearer from-env"}
            ).status_code
            == 200
        )
