"""Servers for the API tests: a real `tuneforge api` process serving the tiny adapter, shared
by a module, and an in-process one whose model is a slow fake, to watch generation stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from serve_helpers import SlowChat, eventually

from tuneforge.config import GenerationArgs
from tuneforge.serving.api import ServerSettings, create_app

API_KEY = "test-secret"
MAX_BATCH, MAX_WAITING = 4, 8
MAX_REQUEST_BYTES = 16384
START_TIMEOUT_S = 300


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    api_key: str = API_KEY
    max_batch: int = MAX_BATCH
    max_waiting: int = MAX_WAITING
    max_request_bytes: int = MAX_REQUEST_BYTES

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_adapter_dir, tmp_path_factory) -> Iterator[Server]:
    with serving(tiny_adapter_dir, tmp_path_factory.mktemp("api")) as running:
        yield running


@pytest.fixture(scope="session")
def serve_model():
    """`serving`, for a module that serves a model of its own."""
    return serving


@contextmanager
def serving(model: Path, folder: Path, max_prompt_tokens: int = 200) -> Iterator[Server]:
    """A `tuneforge api` process serving `model` (its log in `folder`) until the block ends."""
    port = free_port()
    log = folder / "server.log"
    command = [
        sys.executable,
        "-m",
        "tuneforge.cli",
        "api",
        "--adapter",
        str(model),
        "--port",
        str(port),
        "--api-key",
        API_KEY,
        "--max-batch",
        str(MAX_BATCH),
        "--max-waiting",
        str(MAX_WAITING),
        "--max-prompt-tokens",
        str(max_prompt_tokens),
        "--max-tokens",
        "64",
        "--max-request-bytes",
        str(MAX_REQUEST_BYTES),
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process, log)
        yield Server(url, log)
    finally:
        process.terminate()
        process.wait(timeout=60)


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    pytest.fail(f"the server did not start in {START_TIMEOUT_S} s:\n{log.read_text()}")


@dataclass(frozen=True)
class SlowServer:
    url: str
    chat: SlowChat


@pytest.fixture
def slow_server() -> Iterator[SlowServer]:
    """An in-process server (no key, one row per batch) over `SlowChat`."""
    chat = SlowChat()
    app = create_app(
        chat, GenerationArgs(), ServerSettings(model_name="slow", max_batch=1, max_tokens=100_000)
    )
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert eventually(lambda: server.started), "the in-process server did not start"
    try:
        yield SlowServer(f"http://127.0.0.1:{server.config.port}", chat)
    finally:
        chat.stop_all()  # a failed test may leave a long generation behind
        server.should_exit = True
        thread.join(timeout=30)
