"""Rows of every supported format become one Conversation shape; bad rows name file and row."""

from __future__ import annotations

import json
import logging

import pytest

from tuneforge.data import registry
from tuneforge.data.prepare import read_dataset
from tuneforge.errors import DataError


def read(folder, config, name="x", **keys):
    [spec] = registry.resolve([name], folder)
    rows, described = read_dataset(spec, config(folder, dataset=name, **keys), None)
    return rows, described


def read_error(folder, config, name="x", **keys) -> str:
    with pytest.raises(DataError) as caught:
        read(folder, config, name, **keys)
    return str(caught.value)


def msg(role, content):
    return {"role": role, "content": content}


def test_alpaca_joins_instruction_and_input_and_keeps_history_and_system(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "x.json", "formatting": "alpaca"}},
        {
            "x.json": [
                {
                    "instruction": "Translate",
                    "input": "chat",
                    "output": "cat",
                    "system": "Be brief.",
                    "history": [["Hi", "Hello"]],
                },
                {
                    "instruction": "Add 2 and 2",
                    "input": "",
                    "output": "4",
                    "system": "",
                    "history": [],
                },
            ]
        },
    )
    rows, described = read(folder, make_config)
    assert described == "alpaca"
    assert rows[0]["messages"] == [
        msg("system", "Be brief."),
        msg("user", "Hi"),
        msg("assistant", "Hello"),
        msg("user", "Translate\nchat"),
        msg("assistant", "cat"),
    ]
    assert rows[1]["messages"] == [msg("user", "Add 2 and 2"), msg("assistant", "4")]


def test_alpaca_with_renamed_columns(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "x.csv", "columns": {"prompt": "q", "response": "a"}}},
        {"x.csv": "q,a\nHow many legs has a cat?,4\nColour of the sky?,blue\n"},
    )
    rows, _ = read(folder, make_config)
    assert rows[0]["messages"] == [msg("user", "How many legs has a cat?"), msg("assistant", "4")]
    assert len(rows) == 2


def test_sharegpt_maps_tags_roles_and_system_column(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "x.jsonl", "formatting": "sharegpt"}},
        {
            "x.jsonl": [
                {
                    "system": "Use tools.",
                    "tools": '[{"name": "add"}]',
                    "conversations": [
                        {"from": "human", "value": "2+2?"},
                        {
                            "from": "function_call",
                            "value": '{"name": "add", "arguments": {"a": 2}}',
                        },
                        {"from": "observation", "value": "4"},
                        {"from": "gpt", "value": "It is 4."},
                    ],
                },
            ]
        },
    )
    [row] = read(folder, make_config)[0]
    assert [m["role"] for m in row["messages"]] == [
        "system",
        "user",
        "function",
        "observation",
        "assistant",
    ]
    assert json.loads(row["tools"]) == [{"name": "add"}]


def test_openai_messages(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "x.jsonl", "formatting": "openai"}},
        {
            "x.jsonl": [
                {
                    "tools": [{"name": "f"}],
                    "messages": [
                        msg("system", "S"),
                        msg("user", "U"),
                        {"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]},
                        msg("tool", "T"),
                        msg("assistant", "B"),
                    ],
                },
            ]
        },
    )
    [row] = read(folder, make_config)[0]
    assert [m["role"] for m in row["messages"]] == [
        "system",
        "user",
        "function",
        "observation",
        "assistant",
    ]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"instruction": "I", "output": "O"}], "alpaca (detected)"),
        (
            [{"conversations": [{"from": "human", "value": "U"}, {"from": "gpt", "value": "A"}]}],
            "sharegpt (from/value, human/gpt; detected)",
        ),
        (
            [{"messages": [msg("user", "U"), msg("assistant", "A")]}],
            "openai (role/content, user/assistant; detected)",
        ),
        (
            [{"conversations": [msg("user", "U"), msg("assistant", "A")]}],
            "openai (role/content, user/assistant; detected)",
        ),
        (
            [
                {
                    "conversations": [
                        {"from": "user", "value": "U"},
                        {"from": "assistant", "value": "A"},
                    ]
                }
            ],
            "sharegpt (from/value, user/assistant; detected)",
        ),
    ],
)
def test_format_is_detected_from_the_first_row_and_logged(
    make_data, make_config, caplog, rows, expected
):
    folder = make_data({"x": {"file_name": "x.json"}}, {"x.json": rows})
    with caplog.at_level(logging.INFO, logger="tuneforge.data.formats"):
        read_rows, described = read(folder, make_config)
    assert described == expected
    assert f"read {folder}/x.json as {expected}" in caplog.text
    assert [m["role"] for m in read_rows[0]["messages"]] == ["user", "assistant"]


def test_pt_reads_text_column_txt_lines_and_a_renamed_column(make_data, make_config):
    folder = make_data(
        {
            "j": {"file_name": "j.jsonl"},
            "t": {"file_name": "t.txt"},
            "c": {"file_name": "c.json", "columns": {"prompt": "body"}},
        },
        {
            "j.jsonl": [{"text": "one"}, {"text": "two"}],
            "t.txt": "first line\nsecond line\n",
            "c.json": [{"body": "doc"}],
        },
    )
    assert read(folder, make_config, "j", stage="pt")[0]["text"] == ["one", "two"]
    assert read(folder, make_config, "t", stage="pt")[0]["text"] == ["first line", "second line"]
    assert read(folder, make_config, "c", stage="pt")[0]["text"] == ["doc"]


def test_a_folder_is_all_its_files_and_max_samples_keeps_the_first_rows(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "parts"}},
        {
            "parts/a.jsonl": [{"instruction": f"a{i}", "output": "o"} for i in range(3)],
            "parts/b.json": [{"instruction": f"b{i}", "output": "o"} for i in range(3)],
        },
    )
    rows, _ = read(folder, make_config)
    assert [r["messages"][0]["content"] for r in rows] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    rows, _ = read(folder, make_config, max_samples=4)
    assert [r["messages"][0]["content"] for r in rows] == ["a0", "a1", "a2", "b0"]


def test_num_samples_draws_a_seeded_subset(make_data, make_config):
    data = [{"instruction": f"q{i}", "output": "o"} for i in range(10)]
    folder = make_data({"x": {"file_name": "x.json", "num_samples": 4}}, {"x.json": data})
    first = [r["messages"][0]["content"] for r in read(folder, make_config)[0]]
    again = [r["messages"][0]["content"] for r in read(folder, make_config)[0]]
    assert len(first) == 4 and len(set(first)) == 4 and first == again


# --- bad input: every message names the file and the row, line or key -----------------------


def test_sharegpt_roles_out_of_order(make_data, make_config):
    conversation = [
        {"from": "human", "value": "a"},
        {"from": "gpt", "value": "b"},
        {"from": "human", "value": "c"},
        {"from": "gpt", "value": "d"},
    ]
    bad = [
        {"from": "human", "value": "a"},
        {"from": "gpt", "value": "b"},
        {"from": "human", "value": "c"},
        {"from": "human", "value": "d"},
    ]
    folder = make_data(
        {"x": {"file_name": "x.json", "formatting": "sharegpt"}},
        {"x.json": [{"conversations": conversation}] * 2 + [{"conversations": bad}]},
    )
    assert read_error(folder, make_config) == (
        f"{folder}/x.json: row 3: conversations[3].from is 'human' where 'gpt' was expected"
    )


@pytest.mark.parametrize(
    ("conversation", "problem"),
    [
        (
            [{"from": "gpt", "value": "a"}, {"from": "human", "value": "b"}],
            "conversations[0].from is 'gpt' where 'human' was expected",
        ),
        (
            [{"from": "human", "value": "a"}],
            "'conversations' ends with a 'human' message; the last message must be from 'gpt'",
        ),
        (
            [{"from": "human", "value": "a"}, {"from": "bot", "value": "b"}],
            "conversations[1].from is 'bot'; expected one of 'human', 'gpt'",
        ),
        ([{"from": "human", "value": "a"}, {"from": "gpt"}], "conversations[1].value is missing"),
        (
            [{"from": "human", "value": "a"}, {"from": "gpt", "value": " "}],
            "conversations[1].value is empty",
        ),
        (
            [{"from": "human", "value": ""}, {"from": "gpt", "value": "b"}],
            "conversations[0].value is empty",
        ),
        (
            [{"from": "human", "value": "a"}, {"from": "system", "value": "s"}],
            "conversations[1].from is 'system'; a system message can only come first",
        ),
        ([], "'conversations' has no human message"),
    ],
)
def test_bad_sharegpt_rows(make_data, make_config, conversation, problem):
    good = {"conversations": [{"from": "human", "value": "a"}, {"from": "gpt", "value": "b"}]}
    folder = make_data(
        {"x": {"file_name": "x.jsonl", "formatting": "sharegpt"}},
        {"x.jsonl": [good, {"conversations": conversation}]},
    )
    assert read_error(folder, make_config).startswith(f"{folder}/x.jsonl: row 2: {problem}")


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ({"instruction": "q"}, "missing 'output'"),
        ({"instruction": "q", "output": "  "}, "'output' is empty"),
        (
            {"instruction": "", "input": "", "output": "a"},
            "empty prompt ('instruction' and 'input' are empty)",
        ),
        ({"output": "a"}, "missing 'instruction'"),
        ({"instruction": "q", "output": ["a"]}, "'output' is a list, expected text"),
        (
            {"instruction": "q", "output": "a", "history": [["only question"]]},
            "history[0] is not a [question, answer] pair",
        ),
        ({"instruction": "q", "output": "a", "tools": "{not json"}, "'tools' is not valid JSON"),
    ],
)
def test_bad_alpaca_rows(make_data, make_config, row, problem):
    folder = make_data(
        {"x": {"file_name": "x.json", "formatting": "alpaca"}},
        {"x.json": [{"instruction": "q", "input": "", "output": "a"}, row]},
    )
    assert read_error(folder, make_config).startswith(f"{folder}/x.json: row 2: {problem}")


def test_many_bad_rows_are_listed_up_to_ten(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "x.json"}},
        {"x.json": [{"instruction": "q", "output": ""} for _ in range(13)]},
    )
    with pytest.raises(DataError) as caught:
        read(folder, make_config)
    lines = caught.value.lines
    assert lines[0] == f"{folder}/x.json: row 1: 'output' is empty"
    assert lines[9].startswith(f"{folder}/x.json: row 10:")
    assert lines[10] == "... and 3 more rows with problems"


def test_missing_column_names_the_file_and_the_fix(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "x.json", "formatting": "alpaca"}},
        {"x.json": [{"instruction": "q", "answer": "a"}]},
    )
    assert read_error(folder, make_config) == (
        f"{folder}/x.json: no column 'output' (the alpaca response column); the file has: "
        f"instruction, answer; set columns.response in dataset_info.json"
    )


def test_configured_column_that_is_absent(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "x.json", "columns": {"system": "sys"}}},
        {"x.json": [{"instruction": "q", "output": "a"}]},
    )
    assert read_error(folder, make_config).startswith(
        f"{folder}/x.json: no column 'sys' (the alpaca system column)"
    )


def test_column_key_of_another_format(make_data, make_config):
    folder = make_data(
        {
            "x": {
                "file_name": "x.json",
                "formatting": "alpaca",
                "columns": {"messages": "conversations"},
            }
        },
        {"x.json": [{"instruction": "q", "output": "a"}]},
    )
    assert read_error(folder, make_config).startswith(
        "dataset 'x': columns.messages does not apply to alpaca data"
    )


def test_undetectable_format(make_data, make_config):
    folder = make_data({"x": {"file_name": "x.json"}}, {"x.json": [{"question": "q", "a": "b"}]})
    assert read_error(folder, make_config).startswith(
        f"{folder}/x.json: cannot tell the format from the columns (question, a); "
        f"set formatting in dataset_info.json"
    )


def test_malformed_jsonl_names_the_line(make_data, make_config):
    lines = [json.dumps({"instruction": f"q{i}", "output": "a"}) for i in range(20)]
    lines[16] = '{"instruction": "q" "output": "a"}'
    folder = make_data({"x": {"file_name": "x.jsonl"}}, {"x.jsonl": "\n".join(lines) + "\n"})
    assert read_error(folder, make_config) == (
        f"{folder}/x.jsonl:17: invalid JSON (Expecting ',' delimiter)"
    )


def test_malformed_json_names_the_line(make_data, make_config):
    text = '[\n {"instruction": "q", "output": "a"},\n {"instruction": "q" "output": "a"}\n]\n'
    folder = make_data({"x": {"file_name": "x.json"}}, {"x.json": text})
    assert read_error(folder, make_config) == (
        f"{folder}/x.json:3: invalid JSON (Expecting ',' delimiter)"
    )


def test_json_object_at_top_level(make_data, make_config):
    folder = make_data(
        {"x": {"file_name": "x.json"}},
        {"x.json": json.dumps({"data": [{"instruction": "q", "output": "a"}]})},
    )
    message = read_error(folder, make_config)
    assert message.startswith(f"{folder}/x.json:") and "object" in message


def test_unsupported_file_type(make_data, make_config):
    folder = make_data({"x": {"file_name": "x.xlsx"}}, {"x.xlsx": "binary"})
    assert read_error(folder, make_config).startswith(
        f"{folder}/x.xlsx: unsupported file type '.xlsx'"
    )


def test_pt_needs_a_text_column(make_data, make_config):
    folder = make_data({"x": {"file_name": "x.json"}}, {"x.json": [{"instruction": "q"}]})
    assert read_error(folder, make_config, stage="pt") == (
        f"{folder}/x.json: no column 'text' (the text column of stage pt); the file has: "
        f"instruction; set columns.prompt in dataset_info.json"
    )


@pytest.mark.parametrize(
    ("name", "content", "line", "column"),
    [
        ("x.json", '[{"instruction": "h\xe9", "output": "a"}]', 1, 20),
        (
            "x.jsonl",
            '{"instruction": "q", "output": "a"}\n{"instruction": "h\xe9", "output": "a"}\n',
            2,
            19,
        ),
        ("x.csv", "instruction,output\nq,a\nh\xe9,a\n", 3, 2),
    ],
)
def test_data_file_in_another_encoding_names_the_line_and_column(
    make_data, make_config, name, content, line, column
):
    folder = make_data({"x": {"file_name": name}}, {})
    (folder / name).write_bytes(content.encode("latin-1"))
    assert read_error(folder, make_config) == (
        f"{folder}/{name}:{line}: not UTF-8 text (byte 0xe9 at column {column}); "
        f"save the file as UTF-8"
    )


def test_text_file_in_another_encoding_names_the_line(make_data, make_config):
    folder = make_data({"x": {"file_name": "x.txt"}}, {})
    (folder / "x.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    assert read_error(folder, make_config, stage="pt").startswith(f"{folder}/x.txt:1: not UTF-8")


@pytest.mark.parametrize(
    ("row", "missing", "role"),
    [
        ({"instruction": "q", "input": ""}, "output", "response"),
        ({"input": "", "output": "a"}, "instruction", "prompt"),
    ],
)
def test_alpaca_file_without_one_column_names_it(make_data, make_config, row, missing, role):
    folder = make_data({"x": {"file_name": "x.json"}}, {"x.json": [row]})
    assert read_error(folder, make_config) == (
        f"{folder}/x.json: no column '{missing}' (the alpaca {role} column); the file has: "
        f"{', '.join(row)}; set columns.{role} in dataset_info.json"
    )


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("x.jsonl", 'null\n{"instruction": "q", "output": "a"}\n', "x.jsonl:1: the row is null"),
        ("x.jsonl", '{"instruction": "q", "output": "a"}\nnull\n', "x.jsonl:2: the row is null"),
        ("x.json", '[null, {"instruction": "q", "output": "a"}]', "x.json: row 1: is null"),
        ("x.json", '[{"instruction": "q", "output": "a"}, [1]]', "x.json: row 2: is a list"),
    ],
)
def test_rows_that_are_not_objects_are_named_before_pyarrow_sees_them(
    make_data, make_config, name, content, expected
):
    """pyarrow 26 crashes the process (SIGSEGV) on a JSON-lines row that is null."""
    folder = make_data({"x": {"file_name": name}}, {name: content})
    assert read_error(folder, make_config).startswith(f"{folder}/{expected}")


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("x.jsonl", "", "the file is empty"),
        ("x.csv", "", "the file is empty"),
        ("x.json", " \n\n", "the file holds only blank lines"),
        ("x.json", "[]", "the list of rows is empty"),
    ],
)
def test_empty_data_files_say_so(make_data, make_config, name, content, expected):
    folder = make_data({"x": {"file_name": name}}, {name: content})
    assert read_error(folder, make_config) == f"{folder}/{name}: {expected}"


def test_unparsable_csv_is_reported_once_not_also_logged(make_data, make_config, caplog):
    folder = make_data({"x": {"file_name": "x.csv"}}, {"x.csv": 'instruction,output\n"q,a\n'})
    with caplog.at_level(logging.INFO):
        assert read_error(folder, make_config).startswith(f"{folder}/x.csv: cannot read (")
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


def test_deeply_nested_rows_are_a_data_error(make_data, make_config):
    deep = '{"instruction": ' + "[" * 3000 + "]" * 3000 + ', "output": "a"}\n'
    folder = make_data({"x": {"file_name": "x.jsonl"}}, {"x.jsonl": deep})
    assert read_error(folder, make_config) == (
        f"{folder}/x.jsonl: values nested too deeply (hundreds of levels) to be rows"
    )
