"""Chatting with tools (``tuneforge chat --tools``): calls shown as calls, the user's tool
result sent back as an observation, and the model going on from it. The model is a tiny one
trained to call get_weather for Paris (`tool_caller_dir`), so the calls are real output."""

from __future__ import annotations

import json

import pytest

import tuneforge
from tuneforge.cli import main
from tuneforge.config import GenerationArgs
from tuneforge.infer.tool_chat import ReplyStream, pending_calls, read_tools

CALL_LINE = '→ get_weather({"city": "Paris"})'


@pytest.fixture(scope="module")
def tools_file(tool_caller_dir):
    return tool_caller_dir.parent / "tools.json"


def chat_command(monkeypatch, capsys, argv, typed):
    """Run ``tuneforge chat`` with `typed` as the lines the user types; the prompts it showed
    and what it printed."""
    typed, prompts = iter(typed), []

    def fake_input(prompt=""):
        prompts.append(prompt)
        return next(typed)

    monkeypatch.setattr("builtins.input", fake_input)
    code = main(["--quiet", "chat", *argv, "--temperature", "0"])
    assert code == 0 and next(typed, None) is None  # every typed line was read
    return prompts, capsys.readouterr().out


def test_a_call_is_shown_answered_with_an_observation_and_the_model_goes_on(
    tool_caller_dir, tools_file, monkeypatch, capsys
):
    argv = ["--adapter", str(tool_caller_dir), "--tools", str(tools_file)]
    prompts, out = chat_command(monkeypatch, capsys, argv, ["Weather in Paris?", "18 C", "/exit"])
    assert prompts == ["\nYou: ", "observation> ", "\nYou: "]
    assert f"Assistant: {CALL_LINE}\n" in out and "<tool_call>" not in out
    # The answer the model was trained to give only after the tool's result.
    assert out.index(CALL_LINE) < out.index("Assistant: It is 18 C in Paris.")


def test_the_one_question_mode_prints_the_call(tool_caller_dir, tools_file, capsys):
    argv = ["--adapter", str(tool_caller_dir), "--tools", str(tools_file)]
    assert main(["--quiet", "chat", *argv, "--query", "Weather in Paris?"]) == 0
    assert capsys.readouterr().out.strip() == CALL_LINE


def test_a_cut_off_call_is_shown_as_text_with_a_note(tool_caller_dir, tools_file, capsys):
    argv = ["--adapter", str(tool_caller_dir), "--tools", str(tools_file)]
    argv += ["--query", "Weather in Paris?", "--max-new-tokens", "8"]
    assert main(["--quiet", "chat", *argv]) == 0
    out = capsys.readouterr().out
    assert out.startswith('<tool_call>\n{"name') and "→" not in out
    assert out.splitlines()[-1].startswith("(not read as a tool call: call 1 is not valid JSON")


def test_without_tools_the_same_model_shows_its_raw_text(tool_caller_dir, capsys):
    argv = ["--adapter", str(tool_caller_dir), "--query", "Weather in Paris?"]
    assert main(["--quiet", "chat", *argv]) == 0
    assert "→" not in capsys.readouterr().out


def test_the_stream_holds_back_the_call_and_the_conversation_gains_a_call_turn(
    tool_caller_dir, tools_file
):
    model = tuneforge.chat(tool_caller_dir)
    tools = read_tools(str(tools_file))
    asked = [{"role": "user", "content": "Weather in Paris?"}]
    stream = ReplyStream(model, asked, GenerationArgs(max_new_tokens=40), tools)
    assert list(stream) == [] and stream.unshown == ""
    assert stream.text.strip().startswith("<tool_call>")
    conversation = asked + stream.messages
    assert conversation[-1]["role"] == "function"
    assert [c.as_dict() for c in pending_calls(conversation)] == [
        {"name": "get_weather", "arguments": {"city": "Paris"}}
    ]
    assert pending_calls([*conversation, {"role": "observation", "content": "18 C"}]) == []


def test_pending_calls_are_answered_in_order():
    calls = json.dumps([{"name": "a", "arguments": {}}, {"name": "b", "arguments": {"x": 1}}])
    turn = [{"role": "user", "content": "?"}, {"role": "function", "content": calls}]
    assert [c.name for c in pending_calls(turn)] == ["a", "b"]
    answered = [*turn, {"role": "observation", "content": "1"}]
    assert [c.name for c in pending_calls(answered)] == ["b"]
    assert pending_calls([{"role": "user", "content": "?"}]) == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("[{", "not valid JSON (Expecting property name enclosed in double quotes at line 1"),
        ('{"name": "f"}', "tools must be a list of tool schemas"),
        ('[{"parameters": {}}]', "tools[0] is not a tool schema"),
        ("\ufeff[]".encode("utf-16"), "not UTF-8 text"),
    ],
)
def test_a_bad_tools_file_is_one_line_naming_it(tmp_path, capsys, content, message):
    path = tmp_path / "tools.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert main(["chat", "--tools", str(path), "--query", "hi"]) == 3
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert str(path) in err and message in err
