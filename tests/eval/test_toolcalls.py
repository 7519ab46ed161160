"""Tool-call evaluation: each measure on hand-made replies, then `tuneforge eval` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tuneforge
from tuneforge.data.tools import HERMES, JSON_CALLS, ToolCall
from tuneforge.eval import generate
from tuneforge.eval.evaluate import evaluate
from tuneforge.eval.generate import EvalSample
from tuneforge.eval.toolcalls import (
    METRICS,
    ToolSample,
    judge,
    most_wrong,
    row_records,
    same_json,
    tool_call_metrics,
    tool_samples,
)

ROOT = Path(__file__).resolve().parents[2]
# The shipped example's tools: get_weather(city, unit?), convert_units, calculate(expression).
TOOLS = json.loads((ROOT / "examples" / "data" / "tools_schema.json").read_text(encoding="utf-8"))


def sample(*calls: ToolCall, answer: str = "Hello!") -> ToolSample:
    reference = "" if calls else answer
    return ToolSample(EvalSample([{"role": "user", "content": "q"}], reference, TOOLS), calls)


def call(name: str, **arguments) -> ToolCall:
    return ToolCall(name, arguments)


def hermes(*calls: dict) -> str:
    return "\n".join(f"<tool_call>\n{json.dumps(c)}\n</tool_call>" for c in calls)


OSLO = sample(call("get_weather", city="Oslo"))


def verdict(expected: ToolSample, text: str, fmt=HERMES):
    return judge(expected, fmt.parse(text))


def test_the_right_call_passes_every_measure():
    v = verdict(OSLO, hermes({"name": "get_weather", "arguments": {"city": "Oslo"}}))
    assert (v.decision, v.name, v.arguments, v.schema_valid, v.invalid) == (
        True,
        True,
        True,
        True,
        False,
    )
    assert v.problems == () and v.severity == 0


def test_a_wrong_value_fails_exact_match_but_stays_valid_against_the_schema():
    v = verdict(OSLO, hermes({"name": "get_weather", "arguments": {"city": "Paris"}}))
    assert v.decision and v.name and v.schema_valid
    assert not v.arguments
    assert v.problems == ('get_weather: \'city\' is "Paris", expected "Oslo"',)
    assert v.severity == 1


def test_an_argument_outside_the_schema_fails_both():
    v = verdict(
        OSLO, hermes({"name": "get_weather", "arguments": {"city": "Oslo", "unit": "kelvin"}})
    )
    assert v.name and not v.arguments and not v.schema_valid
    assert "get_weather: unexpected 'unit'" in v.problems
    assert any(p.startswith("schema: get_weather: 'unit'") for p in v.problems)


def test_a_missing_required_argument_is_invalid():
    v = verdict(OSLO, hermes({"name": "get_weather", "arguments": {}}))
    assert not v.arguments and not v.schema_valid
    assert "schema: get_weather: missing argument 'city'" in v.problems


def test_the_wrong_function_fails_the_name():
    v = verdict(OSLO, hermes({"name": "calculate", "arguments": {"expression": "1+1"}}))
    assert v.decision and not v.name and not v.arguments
    assert v.schema_valid  # a valid call, of the wrong function
    assert v.problems == ("called calculate, expected get_weather",)
    assert v.severity == 2


def test_an_unknown_function_is_neither_named_right_nor_valid():
    v = verdict(OSLO, hermes({"name": "get_wether", "arguments": {"city": "Oslo"}}))
    assert not v.name and not v.schema_valid
    assert v.problems == ("called get_wether, expected get_weather",)


def test_answering_instead_of_calling_is_a_wrong_decision():
    v = verdict(OSLO, "It is sunny in Oslo.")
    assert not v.decision and not v.name and not v.schema_valid and not v.invalid
    assert v.problems == ("answered instead of calling",) and v.severity == 3


def test_calling_where_an_answer_was_expected_is_a_wrong_decision():
    chat = sample()
    assert verdict(chat, "Hi there!").decision
    v = verdict(chat, hermes({"name": "get_weather", "arguments": {"city": "Oslo"}}))
    assert not v.decision
    assert v.problems == ("called get_weather where an answer was expected",)


def test_a_call_that_is_not_json_counts_as_invalid_not_as_a_wrong_decision():
    v = verdict(OSLO, '<tool_call>\n{"name": "get_weather", "arguments": {city: Oslo}}\n')
    assert v.invalid and v.decision
    assert not v.name and not v.arguments and not v.schema_valid
    assert v.problems[0].startswith("unreadable call: call 1 is not valid JSON")
    assert v.severity == 3


def test_the_order_of_several_calls_matters():
    two = sample(call("get_weather", city="Oslo"), call("calculate", expression="2*3"))
    right = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    other = {"name": "calculate", "arguments": {"expression": "2*3"}}
    assert verdict(two, hermes(right, other)).arguments
    swapped = verdict(two, hermes(other, right))
    assert not swapped.name and swapped.schema_valid
    assert not verdict(two, hermes(right)).name  # one call of two


def test_arguments_compare_as_json_values():
    assert same_json({"a": 2, "b": [1.5, {"c": None}]}, {"b": [1.5, {"c": None}], "a": 2.0})
    assert not same_json({"a": True}, {"a": 1})
    assert not same_json({"a": "2"}, {"a": 2})
    assert not same_json({"a": 1}, {"a": 1, "b": 2})


def test_replies_are_read_in_the_template_format():
    text = '{"name": "get_weather", "parameters": {"city": "Oslo"}}'
    assert verdict(OSLO, text, JSON_CALLS).arguments
    assert not verdict(OSLO, text, HERMES).decision  # not a call in hermes format


def test_metrics_use_all_rows_or_the_call_rows_as_named():
    chat = sample()
    samples = [OSLO, OSLO, OSLO, OSLO, chat, chat]
    replies = [
        hermes({"name": "get_weather", "arguments": {"city": "Oslo"}}),  # right
        hermes({"name": "get_weather", "arguments": {"city": "Bergen"}}),  # wrong value
        "<tool_call>\n{not json}\n</tool_call>",  # unreadable
        "Sunny.",  # no call
        "Hello!",  # right
        hermes({"name": "calculate", "arguments": {"expression": "1"}}),  # called
    ]
    verdicts = [verdict(s, r) for s, r in zip(samples, replies, strict=True)]
    metrics = tool_call_metrics(samples, verdicts)
    assert set(metrics) == set(METRICS)
    assert metrics == pytest.approx(
        {
            "tool_decision_accuracy": 4 / 6,
            "tool_name_accuracy": 2 / 4,
            "tool_arguments_exact": 1 / 4,
            "tool_schema_valid": 2 / 4,
            "tool_overall_accuracy": 2 / 6,
            "tool_invalid_call_rate": 1 / 6,
        }
    )
    texts = {"tuned": replies, "base": ["Sunny."] * 6}
    base = [verdict(s, "Sunny.") for s in samples]
    judged = {"tuned": verdicts, "base": base}
    listed = most_wrong(row_records(samples, texts, judged), judged, "tuned", count=4)
    # worst first; among wrong decisions, the row the base got right (index 5) first
    assert [row["index"] for row in listed] == [5, 2, 3, 1]
    assert listed[0]["tuned_problems"] == ["called calculate where an answer was expected"]
    assert listed[0]["base_problems"] == []
    assert listed[3]["expected"] == ""  # hand-made samples carry no reference text


def test_samples_stop_at_the_first_model_turn():
    calls = '[{"name": "get_weather", "arguments": {"city": "Oslo"}}]'
    rows = {
        "messages": [
            [
                {"role": "user", "content": "Weather in Oslo?"},
                {"role": "function", "content": calls},
                {"role": "observation", "content": '{"temp": 3}'},
                {"role": "assistant", "content": "3 degrees."},
            ],
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
            [{"role": "user", "content": "unanswered"}],
        ],
        "tools": [json.dumps(TOOLS), json.dumps(TOOLS), json.dumps(TOOLS)],
    }
    first, second = tool_samples(rows)
    assert first.sample.messages == rows["messages"][0][:1]
    assert first.expected == (call("get_weather", city="Oslo"),)
    assert first.sample.reference == 'get_weather({"city": "Oslo"})'
    assert first.sample.tools == TOOLS
    assert not second.expects_call and second.sample.reference == "Hello!"


# ---------------------------------------------------------------------------- end to end

CALL_ROWS = [
    ("What's the weather in Oslo?", {"name": "get_weather", "arguments": {"city": "Oslo"}}),
    ("北京天气怎么样？", {"name": "get_weather", "arguments": {"city": "北京"}}),
    ("What is 12*7?", {"name": "calculate", "arguments": {"expression": "12*7"}}),
]
ANSWER_ROWS = [("Hello, who are you?", "I am an assistant.")]


@pytest.fixture(scope="module")
def tools_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tools")
    tools = json.dumps(TOOLS)
    rows = [
        {
            "conversations": [
                {"from": "human", "value": q},
                {"from": "function_call", "value": json.dumps(c, ensure_ascii=False)},
            ],
            "tools": tools,
        }
        for q, c in CALL_ROWS
    ] + [
        {
            "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}],
            "tools": tools,
        }
        for q, a in ANSWER_ROWS
    ]
    (folder / "tools_test.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    info = {
        "tools_test": {
            "file_name": "tools_test.json",
            "formatting": "sharegpt",
            "columns": {"messages": "conversations", "tools": "tools"},
        }
    }
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


@pytest.fixture()
def tools_config(eval_config, tools_dir) -> dict:
    return {
        **eval_config,
        "eval_dataset": "tools_test",
        "dataset_dir": str(tools_dir),
        "max_new_tokens": 6,
    }


def test_tool_data_is_scored_as_calls_for_base_and_tuned(chat_adapter, tools_config, tmp_path):
    report = evaluate(tuneforge.load_config(tools_config), str(chat_adapter), tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8"))
    assert saved["samples"] == 4 and saved["call_samples"] == 3
    assert saved["tool_format"] == "hermes"  # SmolLM2's template has no tool syntax
    assert saved["generation"]["do_sample"] is False
    assert set(saved["base"]) == set(saved["tuned"]) == set(METRICS)
    lines = [json.loads(line) for line in (tmp_path / "tool_call_rows.jsonl").open()]
    assert [line["expected"] for line in lines] == [
        'get_weather({"city": "Oslo"})',
        'get_weather({"city": "北京"})',
        'calculate({"expression": "12*7"})',
        "I am an assistant.",
    ]
    for label in ("base", "tuned"):
        right = [not line[f"{label}_problems"] for line in lines]
        assert saved[label]["tool_overall_accuracy"] == pytest.approx(sum(right) / 4)
    header, table, *_ = report.text.split("\n\n")
    assert header.startswith("4 held-out rows with tools: 3 expect a call, 1 an answer")
    assert table.splitlines()[0].split() == ["metric", "base", "tuned", "delta"]
    assert [row.split()[0] for row in table.splitlines()[1:]] == list(METRICS)
    predictions = (tmp_path / "generated_predictions.jsonl").read_text(encoding="utf-8")
    assert len(predictions.splitlines()) == 4
    assert (tmp_path / "generated_predictions_base.jsonl").is_file()


def test_scores_and_most_wrong_rows_from_scripted_replies(
    chat_adapter, tools_config, tmp_path, monkeypatch
):
    scripted = {
        "tuned": [
            hermes({"name": "get_weather", "arguments": {"city": "Oslo"}}),
            hermes({"name": "get_weather", "arguments": {"city": "Beijing"}}),
            hermes({"name": "calculate", "arguments": {"expression": "12*7"}}),
            "Hi! I am an assistant.",
        ],
        "base": ["It is sunny.", "晴天。", "<tool_call>\n{84}\n</tool_call>", "Hello."],
    }

    def replies(chat, samples, gen, batch_size, path, label):
        path.write_text("", encoding="utf-8")
        return scripted[label]

    monkeypatch.setattr(generate, "generate_predictions", replies)
    report = evaluate(tuneforge.load_config(tools_config), str(chat_adapter), tmp_path)
    tuned, base = report.metrics["tuned"], report.metrics["base"]
    assert tuned["tool_decision_accuracy"] == tuned["tool_name_accuracy"] == 1.0
    assert tuned["tool_arguments_exact"] == pytest.approx(2 / 3)
    assert tuned["tool_overall_accuracy"] == 0.75 and tuned["tool_schema_valid"] == 1.0
    assert base["tool_decision_accuracy"] == 0.5 and base["tool_invalid_call_rate"] == 0.25
    assert base["tool_overall_accuracy"] == 0.25 and base["tool_schema_valid"] == 0.0
    assert report.metrics["invalid_calls"] == {"tuned": 0, "base": 1}
    (wrong,) = report.metrics["wrong_tool_calls"]
    assert wrong["index"] == 1 and wrong["tuned"] == scripted["tuned"][1]
    assert wrong["tuned_problems"] == ['get_weather: \'city\' is "Beijing", expected "北京"']
    assert wrong["base_problems"] == ["answered instead of calling"]
    assert "Most wrong rows (tuned):\n[1] get_weather: 'city' is \"Beijing\"" in report.text
    assert "replies that tried to call but did not parse: tuned 0, base 1" in report.text


def test_cli_prints_the_base_and_tuned_call_table(chat_adapter, tools_config, tmp_path):
    config = tmp_path / "tools.yaml"
    config.write_text(json.dumps(tools_config), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "tuneforge.cli", "eval", str(config), "--adapter", str(chat_adapter)]
        + ["--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "tool_arguments_exact" in done.stdout and "delta" in done.stdout
    assert f"Results in {tmp_path / 'out'}" in done.stdout
