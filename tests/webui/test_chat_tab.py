"""The Chat tab with tools, without a browser: the tab's send functions on a tiny model trained
to call get_weather for Paris (`tool_caller_dir`), so the calls are real output. A call is
shown as a call, the tool result box answers it and the model goes on from the result."""

from __future__ import annotations

import pytest

pytest.importorskip("gradio")

from tuneforge.webui.chat_tab import ChatHolder, send_message, send_result  # noqa: E402
from tuneforge.webui.locales import text  # noqa: E402

CALL_BLOCK = '```\nget_weather({"city": "Paris"})\n```'


@pytest.fixture(scope="module")
def holder(tool_caller_dir):
    loaded = ChatHolder()
    loaded.load("unused: the run names its base", str(tool_caller_dir))
    return loaded


@pytest.fixture(scope="module")
def tools_json(tool_caller_dir):
    return (tool_caller_dir.parent / "tools.json").read_text()


def settings(tools: str, max_new_tokens: int = 40) -> tuple:
    """The form's system prompt, tools, temperature, top_p, max_new_tokens, penalty."""
    return ("", tools, 0, 1.0, max_new_tokens, 1.0)


def last(updates):
    updates = list(updates)
    return updates, updates[-1]


def test_a_call_is_shown_as_a_call_and_its_result_lets_the_model_go_on(holder, tools_json):
    updates, (turns, messages, box, _) = last(
        send_message(holder, "en", "Weather in Paris?", [], [], *settings(tools_json))
    )
    assert all("<tool_call>" not in str(page) for page, *_ in updates)  # never half a call
    assert turns[-1] == {"role": "assistant", "content": CALL_BLOCK} and box == ""
    assert [m["role"] for m in messages] == ["user", "function"]

    _, (turns, messages, box, _) = last(
        send_result(holder, "en", "18 C", turns, messages, *settings(tools_json))
    )
    assert [m["role"] for m in messages] == ["user", "function", "observation", "assistant"]
    assert turns[-2] == {"role": "user", "content": "Tool result:\n```\n18 C\n```"}
    assert turns[-1] == {"role": "assistant", "content": "It is 18 C in Paris."}
    assert box == ""


def test_tools_may_be_a_file_and_a_cut_off_call_is_text_with_a_note(holder, tool_caller_dir):
    path = str(tool_caller_dir.parent / "tools.json")
    _, (turns, messages, _, _) = last(
        send_message(holder, "zh", "Weather in Paris?", [], [], *settings(path, 8))
    )
    shown = turns[-1]["content"]
    assert shown.startswith('```\n<tool_call>\n{"name')
    assert "（无法识别为工具调用：call 1 is not valid JSON" in shown
    assert messages[-1]["role"] == "assistant"  # no call to answer


def test_a_result_with_no_call_to_answer_changes_nothing(holder, tools_json):
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]
    _, (shown, kept, box, status) = last(
        send_result(holder, "en", "18 C", turns, messages, *settings(tools_json))
    )
    assert (shown, kept, box) == (turns, messages, "18 C")
    assert text("msg.no_call", "en") in status["value"]


@pytest.mark.parametrize(
    ("tools", "message"),
    [
        ("[{", "pasted tools: not valid JSON"),
        ("nowhere/tools.json", "nowhere/tools.json: no such file"),
        ('[{"parameters": {}}]', "pasted tools: tools\\[0\\] is not a tool schema"),
    ],
)
def test_bad_tools_are_one_line_in_the_status_and_the_message_is_kept(holder, tools, message):
    _, (turns, messages, box, status) = last(
        send_message(holder, "en", "Weather in Paris?", [], [], *settings(tools))
    )
    assert (turns, messages, box) == ([], [], "Weather in Paris?")
    assert message in status["value"] and status["value"].count("\n") == 0


def test_nothing_is_sent_before_a_model_is_loaded():
    _, (_, _, box, status) = last(send_message(ChatHolder(), "zh", "你好", [], [], *settings("")))
    assert box == "你好" and text("msg.load_first", "zh") in status["value"]
