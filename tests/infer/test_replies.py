"""What a streamed choice sends while it is generated, and how it ends (no model needed)."""

from __future__ import annotations

import pytest

from tuneforge.data.tools import HERMES, JSON_CALLS, ToolCall
from tuneforge.infer.replies import ReplyReader

CALL = '{"name": "f", "arguments": {"a": 1}}'


def read(fmt, pieces, prefill=""):
    reader = ReplyReader(fmt, prefill)
    sent = [reader.feed(piece) for piece in pieces]
    rest, answer = reader.finish("stop")
    return sent, rest, answer


def test_text_before_a_call_is_streamed_and_the_call_is_held_back():
    pieces = ["Let me", " check.", "\n<tool", f"_call>\n{CALL}", "\n</", "tool_call>"]
    sent, rest, answer = read(HERMES, pieces)
    assert sent == ["Let me", " check.", "", "", "", ""] and rest == ""
    assert answer.content == "Let me check." and answer.finish_reason == "tool_calls"
    assert answer.calls == (ToolCall("f", {"a": 1}),)


def test_a_partial_marker_that_is_not_one_goes_out_with_the_next_piece():
    sent, rest, answer = read(HERMES, ["a <", "b> c "])
    assert sent == ["a", " <b> c"] and rest == " "
    assert answer.content == "a <b> c " and answer.calls == ()


def test_a_call_that_does_not_parse_is_answered_as_the_text_the_model_wrote(caplog):
    sent, rest, answer = read(HERMES, ["\n<tool_call>", '\n{"name": "f", "argu'])
    assert sent == ["", ""] and rest == '\n<tool_call>\n{"name": "f", "argu'
    assert answer.content == rest and answer.calls == () and answer.finish_reason == "stop"
    assert "tried to call a tool" in caplog.text


@pytest.mark.parametrize("pieces", [[' {"a": 1}}\n</tool_call>'], []])
def test_a_prefilled_call_is_part_of_the_reply(pieces):
    prefill = HERMES.call_prefix("g")
    sent, rest, answer = read(HERMES, pieces, prefill)
    assert not any(sent)
    if pieces:
        assert answer.calls == (ToolCall("g", {"a": 1}),) and rest == ""
    else:  # nothing followed the prefill: not a call, and said as it was written
        assert answer.calls == () and rest == prefill == answer.content


def test_the_json_format_calls_only_with_the_whole_reply():
    assert read(JSON_CALLS, ["x = {", "1}"])[:2] == (["x = {", "1}"], "")
    sent, _, answer = read(JSON_CALLS, ["  ", '{"name": "f", "parameters": {}}'])
    assert sent == ["", ""] and answer.calls == (ToolCall("f", {}),) and answer.content is None


def test_without_tools_every_piece_goes_out_as_it_comes():
    reader = ReplyReader()
    assert [reader.feed(piece) for piece in [" <tool_call>", " x "]] == [" <tool_call>", " x "]
    assert reader.finish("length")[1].content == " <tool_call> x "


@pytest.mark.parametrize(
    ("fmt", "text", "sent"),
    [
        (HERMES, "Sure.", "Sure."),
        (HERMES, "Sure. <tool_", "Sure."),  # may be the start of a call: held back
        (HERMES, "Let me check.\n<tool_call>\n{", "Let me check."),
        (HERMES, "a <b> c", "a <b> c"),
        (JSON_CALLS, "  ", ""),
        (JSON_CALLS, "<|python", ""),  # may be Llama 3.1's lead before a call
        (JSON_CALLS, '<|python_tag|>{"name"', ""),
        (JSON_CALLS, "<|python_tag|>print(1)", "<|python_tag|>print(1)"),
        (JSON_CALLS, ' {"name": "x"', ""),
        (JSON_CALLS, "It is sunny {maybe}", "It is sunny {maybe}"),
    ],
)
def test_text_goes_out_once_it_cannot_be_a_call(fmt, text, sent):
    reader = ReplyReader(fmt)
    assert "".join(reader.feed(char) for char in text) == sent
