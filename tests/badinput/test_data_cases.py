"""Bad dataset registries, data files and rows: `tuneforge train` names the file, line or
row before any weights load (the tiny model's tokenizer does load)."""

from __future__ import annotations

import pytest

DATA_ERROR = 3
INFO = "data/dataset_info.json"

BAD_ENTRIES = {
    "key typo": (
        {"file_name": "demo.jsonl", "formating": "alpaca"},
        [INFO, "dataset 'demo'", "unknown key 'formating'", "did you mean 'formatting'"],
    ),
    "column key typo": (
        {"file_name": "demo.jsonl", "columns": {"promt": "instruction"}},
        [INFO, "unknown key 'columns.promt'", "did you mean 'prompt'"],
    ),
    "formatting typo": (
        {"file_name": "demo.jsonl", "formatting": "sharegtp"},
        [INFO, "formatting 'sharegtp'", "did you mean 'sharegpt'"],
    ),
    "wrong value type": (
        {"file_name": "demo.jsonl", "num_samples": "ten"},
        [INFO, "'num_samples' must be a whole number"],
    ),
    "column as a list": (
        {"file_name": "demo.jsonl", "columns": {"prompt": ["a"]}},
        [INFO, "'columns.prompt' must be a string"],
    ),
    "no source": ({"formatting": "alpaca"}, [INFO, "needs exactly one of 'file_name'"]),
    "preference data for sft": (
        {"file_name": "demo.jsonl", "ranking": True},
        ["dataset 'demo': is preference data (ranking: true)", "use it with stage dpo"],
    ),
    "entry not an object": ("demo.jsonl", [INFO, "dataset 'demo': must be an object, not str"]),
    "missing data file": ({"file_name": "missing.jsonl"}, ["data/missing.jsonl: not found"]),
}


@pytest.mark.parametrize(("entry", "names"), BAD_ENTRIES.values(), ids=BAD_ENTRIES)
def test_bad_registry_entry(model_project, entry, names):
    model_project.register(entry)
    assert model_project.rejects(["train", "run.yaml"], DATA_ERROR, *names)


def test_dataset_name_not_registered(model_project):
    model_project.write_config(dataset="dmeo")
    assert model_project.rejects(
        ["train", "run.yaml"], DATA_ERROR, INFO, "no dataset named 'dmeo'", "did you mean 'demo'"
    )


BAD_INFO_FILES = {
    "invalid JSON": ('{\n  "demo": {"file_name": "demo.jsonl",}\n}', [f"{INFO}:2: invalid JSON"]),
    "not UTF-8": (
        '{"d\xe9mo": {"file_name": "demo.jsonl"}}'.encode("latin-1"),
        [f"{INFO}:1:", "not UTF-8", "column 4"],
    ),
    "a list": ('[{"file_name": "demo.jsonl"}]', [INFO, "must be a JSON object"]),
}


@pytest.mark.parametrize(("content", "names"), BAD_INFO_FILES.values(), ids=BAD_INFO_FILES)
def test_bad_dataset_info_file(model_project, content, names):
    model_project.write(INFO, content)
    assert model_project.rejects(["train", "run.yaml"], DATA_ERROR, *names)


def test_dataset_info_missing(model_project):
    model_project.write_config(dataset_dir="elsewhere")
    model_project.write("elsewhere/readme.txt", "no registry here")
    assert model_project.rejects(
        ["train", "run.yaml"], DATA_ERROR, "elsewhere/dataset_info.json: not found"
    )


GOOD_LINE = '{"instruction": "q", "output": "a"}\n'

BAD_DATA_FILES = {
    "empty": ("demo.jsonl", "", ["data/demo.jsonl: the file is empty"]),
    "blank lines": ("demo.json", "\n \n", ["data/demo.json: the file holds only blank lines"]),
    "empty list": ("demo.json", "[]", ["data/demo.json: the list of rows is empty"]),
    "malformed line": (
        "demo.jsonl",
        GOOD_LINE * 3 + '{"instruction": "q" "output": "a"}\n',
        ["data/demo.jsonl:4: invalid JSON"],
    ),
    "malformed JSON": (
        "demo.json",
        '[\n{"instruction": "q", "output": "a"},\n{"instruction"\n]',
        ["data/demo.json:4: invalid JSON"],
    ),
    "top level text": (
        "demo.json",
        '"just some text"',
        ["data/demo.json: the top level is str; expected a list of rows"],
    ),
    "null row": ("demo.jsonl", GOOD_LINE + "null\n", ["data/demo.jsonl:2: the row is null"]),
    "row not an object": (
        "demo.json",
        '[{"instruction": "q", "output": "a"}, 7]',
        ["data/demo.json: row 2: is a number"],
    ),
    "row without output": (
        "demo.jsonl",
        GOOD_LINE + '{"instruction": "q2"}\n',
        ["data/demo.jsonl: row 2: missing 'output'"],
    ),
    "empty output": (
        "demo.jsonl",
        GOOD_LINE + '{"instruction": "q2", "output": " "}\n',
        ["data/demo.jsonl: row 2: 'output' is empty"],
    ),
    "no output column": (
        "demo.jsonl",
        '{"instruction": "q", "input": ""}\n',
        [
            "data/demo.jsonl",
            "no column 'output'",
            "the file has: instruction, input",
            "columns.response",
        ],
    ),
    "no known columns": (
        "demo.jsonl",
        '{"question": "q", "answer": "a"}\n',
        ["data/demo.jsonl", "cannot tell the format", "question, answer"],
    ),
    "unsupported type": ("demo.xlsx", "x", ["data/demo.xlsx: unsupported file type '.xlsx'"]),
    "CSV that does not parse": (
        "demo.csv",
        'instruction,output\n"q,a\n',
        ["data/demo.csv: cannot read"],
    ),
    "CSV without output": ("demo.csv", "instruction,answer\nq,a\n", ["no column 'output'"]),
    "not UTF-8 jsonl": (
        "demo.jsonl",
        '{"instruction": "caf\xe9", "output": "a"}\n',
        ["data/demo.jsonl:1:", "not UTF-8", "byte 0xe9", "column 21"],
    ),
    "not UTF-8 json": (
        "demo.json",
        '[\n{"instruction": "q", "output": "caf\xe9"}]',
        ["data/demo.json:2:", "not UTF-8"],
    ),
    "not UTF-8 csv": ("demo.csv", "instruction,output\nq,caf\xe9\n", ["data/demo.csv:2:"]),
}


@pytest.mark.parametrize(("name", "content", "names"), BAD_DATA_FILES.values(), ids=BAD_DATA_FILES)
def test_bad_data_file(model_project, name, content, names):
    model_project.register({"file_name": name})
    model_project.write(f"data/{name}", content.encode("latin-1"))
    assert model_project.rejects(["train", "run.yaml"], DATA_ERROR, *names)


def test_not_utf8_text_file_for_pretraining(model_project):
    model_project.register({"file_name": "demo.txt"})
    model_project.write("data/demo.txt", "caf\xe9 au lait\n".encode("latin-1"))
    assert model_project.rejects(["train", "run.yaml", "stage=pt"], DATA_ERROR, "data/demo.txt:1:")


BAD_CHATS = {
    "unknown role": (
        [{"from": "human", "value": "q"}, {"from": "robot", "value": "a"}],
        ["row 1: conversations[1].from is 'robot'"],
    ),
    "ends with the user": (
        [{"from": "human", "value": "q"}],
        ["row 1: 'conversations' ends with a 'human' message"],
    ),
    "two users in a row": (
        [
            {"from": "human", "value": "q"},
            {"from": "human", "value": "q"},
            {"from": "gpt", "value": "a"},
        ],
        ["row 1: conversations[1].from is 'human' where 'gpt' was expected"],
    ),
}


@pytest.mark.parametrize(("conversation", "names"), BAD_CHATS.values(), ids=BAD_CHATS)
def test_bad_sharegpt_row(model_project, conversation, names):
    model_project.write("data/demo.jsonl", [{"conversations": conversation}])
    assert model_project.rejects(["train", "run.yaml"], DATA_ERROR, "data/demo.jsonl", *names)


def test_tools_that_are_not_json(model_project):
    model_project.write("data/demo.jsonl", [{"instruction": "q", "output": "a", "tools": "[{oops"}])
    assert model_project.rejects(
        ["train", "run.yaml"], DATA_ERROR, "data/demo.jsonl: row 1: 'tools' is not valid JSON"
    )


def test_val_size_larger_than_the_data(model_project):
    assert model_project.rejects(
        ["train", "run.yaml", "val_size=100"],
        2,
        "val_size: 100.0 gives 100 validation samples out of",
    )


def test_dataset_folder_without_files(model_project):
    model_project.register({"file_name": "parts"})
    (model_project.root / "data/parts").mkdir()
    assert model_project.rejects(
        ["train", "run.yaml"], DATA_ERROR, "data/parts: the folder holds no data files"
    )


PAIR = {"instruction": "q", "chosen": "short", "rejected": "a long answer"}
BAD_PAIRS = {
    "missing rejected": (
        [PAIR, {"instruction": "q2", "chosen": "a"}],
        ["data/demo.jsonl: row 2: missing 'rejected'"],
    ),
    "identical answers": (
        [PAIR, {"instruction": "q2", "chosen": "same", "rejected": "same "}],
        ["data/demo.jsonl: row 2: 'chosen' and 'rejected' are the same answer"],
    ),
    "empty chosen": (
        [{"instruction": "q2", "chosen": " ", "rejected": "b"}],
        ["data/demo.jsonl: row 1: 'chosen' is empty"],
    ),
    "conversation ending with an answer": (
        [
            {
                "conversations": [
                    {"from": "human", "value": "q"},
                    {"from": "gpt", "value": "a"},
                ],
                "chosen": {"from": "gpt", "value": "b"},
                "rejected": {"from": "gpt", "value": "c"},
            }
        ],
        ["data/demo.jsonl: row 1: 'conversations' ends with an answer"],
    ),
}


@pytest.mark.parametrize(("rows", "names"), BAD_PAIRS.values(), ids=BAD_PAIRS)
def test_bad_preference_row(model_project, rows, names):
    model_project.register({"file_name": "demo.jsonl", "ranking": True})
    model_project.write("data/demo.jsonl", rows)
    assert model_project.rejects(["train", "run.yaml", "stage=dpo"], DATA_ERROR, *names)


def test_plain_data_for_dpo_says_how_to_register_pairs(model_project):
    assert model_project.rejects(
        ["train", "run.yaml", "stage=dpo"],
        DATA_ERROR,
        "dataset 'demo': stage dpo needs preference pairs",
        '"ranking": true',
    )


KTO_INFO = {
    "file_name": "demo.jsonl",
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "kto_tag": "label"},
    "tags": {
        "role_tag": "role",
        "content_tag": "content",
        "user_tag": "user",
        "assistant_tag": "assistant",
    },
}


def kto_row(label: object, answer: str = "a") -> dict:
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "label": label}


def test_kto_mark_that_is_not_true_or_false(model_project):
    model_project.register(KTO_INFO)
    model_project.write("data/demo.jsonl", [kto_row(True), kto_row("yes")])
    assert model_project.rejects(
        ["train", "run.yaml", "stage=kto", "per_device_train_batch_size=2"],
        DATA_ERROR,
        "data/demo.jsonl: row 2: 'label' is 'yes'; expected true or false",
    )


def test_kto_data_with_only_good_answers(model_project):
    model_project.register(KTO_INFO)
    model_project.write("data/demo.jsonl", [kto_row(True), kto_row(True, "b")])
    assert model_project.rejects(
        ["train", "run.yaml", "stage=kto", "per_device_train_batch_size=2"],
        DATA_ERROR,
        "stage kto needs answers marked both true and false; demo has only true (good) ones",
    )
