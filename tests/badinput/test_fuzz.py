"""Whatever the user hands over, the config loader and the data readers answer with a
tuneforge `UserError` (one line naming the problem) or a result, never another exception.

Random bytes, text in other encodings, random YAML and JSON structures built from the keys
tuneforge knows (so the checks behind the parsers are reached), and random overrides.
"""

from __future__ import annotations

import csv
import io
import json
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuneforge.config import check_environment, load_config
from tuneforge.config.schema import field_owner
from tuneforge.data import registry
from tuneforge.data.prepare import read_splits
from tuneforge.data.samples import read_samples
from tuneforge.errors import UserError

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ_READS = settings(FUZZ, max_examples=40)  # each example reads files through `datasets`

CONFIG_KEYS = sorted(field_owner())
ROW_KEYS = [
    "instruction",
    "input",
    "output",
    "system",
    "history",
    "conversations",
    "messages",
    "from",
    "value",
    "role",
    "content",
    "tools",
    "text",
    "label",
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-32", "latin-1", "cp1252", "shift_jis", "gbk"]
SUFFIXES = ["json", "jsonl", "csv", "txt", "parquet", "arrow"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**20)
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        ["alpaca", "sharegpt", "openai", "human", "gpt", "user", "assistant", "system"]
    )
    | st.sampled_from(["x" * 300, "~nosuchuser/x", "a\x00b", ".", "/", "data"])
)


def nested(keys: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """JSON-like values whose mapping keys are mostly ones tuneforge reads."""
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
        max_leaves=16,
    )


config_keys = st.sampled_from(CONFIG_KEYS) | st.text(max_size=10)
row_keys = st.sampled_from(ROW_KEYS) | st.text(max_size=6)
entry_keys = st.sampled_from(
    [
        *registry.ENTRY_KEYS,
        *registry.UNSUPPORTED_ENTRY_KEYS,
        *registry.COLUMN_KEYS,
        *registry.TAG_KEYS,
    ]
) | st.text(max_size=6)


def only_user_errors(call: Callable[[], object]) -> None:
    try:
        call()
    except UserError as err:
        assert err.lines, "a UserError without a message"


@pytest.fixture(scope="module")
def scratch() -> Iterator[Callable[[], Path]]:
    """A fresh folder per example (function-scoped tmp_path does not mix with @given)."""
    with tempfile.TemporaryDirectory() as root:
        count = iter(range(10**9))
        yield lambda: Path(tempfile.mkdtemp(dir=root, prefix=f"{next(count)}-"))


# -- config files and overrides ----------------------------------------------------------

config_texts = st.one_of(
    st.builds(yaml.safe_dump, st.dictionaries(config_keys, nested(config_keys), max_size=8)),
    st.builds(yaml.safe_dump, nested(config_keys)),
    st.text(max_size=200),
    st.lists(st.tuples(config_keys, st.text(max_size=12)), max_size=6).map(
        lambda pairs: "".join(f"{key}: {value}\n" for key, value in pairs)
    ),
)
config_bytes = st.one_of(
    st.binary(max_size=300),
    st.tuples(config_texts, st.sampled_from(ENCODINGS)).map(
        lambda pair: pair[0].encode(pair[1], errors="replace")
    ),
)
overrides = st.lists(
    st.one_of(
        st.tuples(config_keys, nested(config_keys)).map(
            lambda pair: f"{pair[0]}={yaml.safe_dump(pair[1], default_flow_style=True).strip()}"
        ),
        st.tuples(config_keys, st.text(max_size=12)).map(lambda pair: f"{pair[0]}={pair[1]}"),
        st.text(max_size=20),
    ),
    max_size=4,
)


@FUZZ
@given(content=config_bytes, words=overrides)
def test_config_loader_raises_only_config_errors(scratch, content, words):
    path = scratch() / "run.yaml"
    path.write_bytes(content)
    only_user_errors(lambda: load_config(path, words))


@FUZZ
@given(raw=st.dictionaries(config_keys, nested(config_keys), max_size=8), words=overrides)
def test_config_dicts_and_overrides_raise_only_config_errors(raw, words):
    only_user_errors(lambda: load_config(raw, words))


@FUZZ
@given(
    key=st.sampled_from(["deepspeed", "fsdp_config"]),
    suffix=st.sampled_from(["json", "yaml"]),
    content=config_bytes
    | st.builds(
        lambda value: json.dumps(value).encode(),
        nested(st.sampled_from(["zero_optimization", "stage", "offload_optimizer"])),
    ),
)
def test_engine_files_raise_only_config_errors(scratch, key, suffix, content):
    path = scratch() / f"engine.{suffix}"
    path.write_bytes(content)
    cfg = load_config({"dataset": "x", key: str(path), "fsdp": key == "fsdp_config"})
    only_user_errors(lambda: check_environment(cfg))


# -- dataset registries and data files ---------------------------------------------------


def csv_text(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(out, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


texts = st.text(max_size=12) | scalars
messages = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "from": st.sampled_from(["human", "gpt", "system", "observation", "function_call"])
            | scalars,
            "value": texts,
            "role": st.sampled_from(["user", "assistant", "system", "tool"]) | scalars,
            "content": texts,
        },
    ),
    max_size=4,
)
row = st.one_of(
    st.fixed_dictionaries(
        {"instruction": texts, "output": texts},
        optional={
            "input": texts,
            "system": texts,
            "history": nested(row_keys),
            "tools": nested(row_keys).map(json.dumps) | texts,
        },
    ),
    st.fixed_dictionaries({"conversations": messages}, optional={"system": texts, "tools": texts}),
    st.fixed_dictionaries({"messages": messages}),
    st.fixed_dictionaries({"text": texts}, optional={"label": texts}),
    st.dictionaries(row_keys, nested(row_keys), max_size=5),
)
rows = st.lists(row, min_size=1, max_size=6)
data_contents = st.one_of(
    st.builds(lambda r: json.dumps(r).encode(), rows),
    st.builds(lambda r: "".join(json.dumps(item) + "\n" for item in r).encode(), rows),
    st.builds(
        lambda r: "".join(json.dumps(value) + "\n" for value in r).encode(),
        st.lists(nested(row_keys), min_size=1, max_size=5),
    ),
    st.builds(
        lambda r: csv_text(
            [
                {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in item.items()}
                for item in r
            ]
        ).encode(),
        rows,
    ),
    st.builds(
        lambda text, encoding: text.encode(encoding, errors="replace"),
        st.text(max_size=200),
        st.sampled_from(ENCODINGS),
    ),
    st.binary(max_size=300),
)
usable_entries = st.fixed_dictionaries(
    {"file_name": st.just("rows.DATA")},
    optional={
        "formatting": st.sampled_from(registry.FORMATTINGS),
        "columns": st.dictionaries(
            st.sampled_from(sorted(registry.COLUMN_KEYS)), row_keys, max_size=2
        ),
        "tags": st.dictionaries(
            st.sampled_from(sorted(registry.TAG_KEYS)),
            st.sampled_from(["from", "value", "role", "content", "human", "gpt", "user"]),
            max_size=2,
        ),
        "num_samples": st.integers(1, 8),
    },
)
registry_entries = st.one_of(
    usable_entries,
    st.fixed_dictionaries(
        {"file_name": st.just("rows.DATA")},
        optional={key: nested(entry_keys) for key in registry.ENTRY_KEYS if key != "file_name"},
    ),
    st.dictionaries(entry_keys, nested(entry_keys), max_size=5),
    nested(entry_keys),
)


def write_dataset(folder: Path, entry: Any, suffix: str, content: bytes) -> None:
    info = json.dumps({"x": entry}).replace("rows.DATA", f"rows.{suffix}")
    (folder / "dataset_info.json").write_text(info, encoding="utf-8")
    (folder / f"rows.{suffix}").write_bytes(content)


@FUZZ
@given(
    info=st.one_of(
        st.builds(lambda value: json.dumps(value).encode(), nested(entry_keys)),
        st.builds(
            lambda entries: json.dumps(entries).encode(),
            st.dictionaries(st.text(max_size=4) | st.just("x"), registry_entries, max_size=3),
        ),
        st.binary(max_size=200),
    ),
    names=st.lists(st.just("x") | st.text(max_size=4), min_size=1, max_size=3),
)
def test_dataset_info_raises_only_data_errors(scratch, info, names):
    folder = scratch()
    (folder / "dataset_info.json").write_bytes(info)
    only_user_errors(lambda: registry.resolve(names, folder))


@FUZZ_READS
@given(
    entry=usable_entries,
    suffix=st.sampled_from(SUFFIXES),
    content=data_contents,
    stage=st.sampled_from(["sft", "pt", "cls"]),
    val_size=st.sampled_from([0, 0.5, 1]),
)
def test_data_files_raise_only_user_errors(scratch, entry, suffix, content, stage, val_size):
    folder = scratch()
    write_dataset(folder, entry, suffix, content)
    cfg = load_config(
        {
            "dataset": "x",
            "dataset_dir": str(folder),
            "stage": stage,
            "val_size": val_size,
            "cache_dir": str(folder / "cache"),
        }
    )
    only_user_errors(lambda: read_splits(cfg, None))
    only_user_errors(lambda: read_splits(cfg, None, answered=False))
    only_user_errors(lambda: read_samples(cfg))
