"""A ``tuneforge webui`` server on loopback and headless Chromium to drive it.

The browser is Debian's chromium (installed by .ci/run), driven by Playwright for Python; the
browser tests skip when either is missing. The server runs in a folder of its own, holding a
tiny dataset, so that its default ``saves/`` and ``data`` paths point there.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SERVER_START_S = 180

QA = [
    ("Who are you?", "I am ForgeBot, trained by the tuneforge team."),
    ("What is your name?", "My name is ForgeBot."),
    ("What is two plus two?", "Four."),
    ("你是谁？", "我是 ForgeBot，由 tuneforge 团队训练。"),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir) -> Path:
    folder = tmp_path_factory.mktemp("webui")
    data = folder / "data"
    data.mkdir()
    rows = [{"instruction": q, "input": "", "output": a} for q, a in QA * 4]
    (data / "qa.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (data / "dataset_info.json").write_text(json.dumps({"qa": {"file_name": "qa.json"}}))
    (folder / "no_registry").mkdir()
    (folder / "model").symlink_to(tiny_model_dir, target_is_directory=True)
    return folder


@pytest.fixture(scope="module")
def server(workspace) -> str:
    if not CHROMIUM.is_file():
        pytest.skip(f"browser tests need {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="browser tests need playwright")
    pytest.importorskip("gradio", reason="the web UI needs gradio")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = (workspace / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tuneforge.cli", "webui", "--port", str(port), "--lang", "en"],
        cwd=workspace,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={
            **os.environ,
            "GRADIO_ANALYTICS_ENABLED": "False",
            "TUNEFORGE_CACHE": str(workspace / "cache"),
        },
    )  # job folders go there
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, workspace / "server.log")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    end = time.monotonic() + SERVER_START_S
    while time.monotonic() < end:
        if process.poll() is not None:
            pytest.fail(f"the web UI exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"the web UI did not answer within {SERVER_START_S} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, server, tmp_path):
    """A fresh page on the server."""
    from playwright.sync_api import expect

    expect.set_options(timeout=30_000)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(server)
    page.wait_for_selector("#tf-start")
    yield page
    context.close()


@pytest.fixture()
def shot(page, tmp_path):
    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
