"""dataset_info.json is validated strictly and every problem is reported at once."""

from __future__ import annotations

import json
import time

import pytest

from tuneforge.data import files, registry
from tuneforge.errors import DataError

ROWS = [{"instruction": "Hi?", "output": "Hello."}]


def resolve_error(folder, *names: str) -> DataError:
    with pytest.raises(DataError) as caught:
        registry.resolve(list(names), folder)
    return caught.value


def test_valid_entry_resolves_to_a_spec(make_data):
    folder = make_data(
        {
            "x": {
                "file_name": "x.json",
                "formatting": "alpaca",
                "columns": {"prompt": "q", "response": "a"},
            }
        },
        {"x.json": ROWS},
    )
    [spec] = registry.resolve(["x"], folder)
    assert spec.path == folder / "x.json"
    assert spec.formatting == "alpaca"
    assert dict(spec.columns) == {"prompt": "q", "response": "a"}


def test_unknown_entry_key_suggests_the_right_one(make_data):
    folder = make_data({"x": {"file_name": "x.json", "format": "sharegpt"}}, {"x.json": ROWS})
    error = resolve_error(folder, "x")
    assert str(error) == (
        f"{folder}/dataset_info.json: dataset 'x': unknown key 'format'; did you mean 'formatting'?"
    )


def test_unknown_column_and_tag_keys_suggest_the_right_ones(make_data):
    folder = make_data(
        {
            "x": {
                "file_name": "x.json",
                "formatting": "sharegpt",
                "columns": {"mesages": "conv"},
                "tags": {"role": "from"},
            }
        },
        {"x.json": ROWS},
    )
    lines = resolve_error(folder, "x").lines
    assert (
        f"{folder}/dataset_info.json: dataset 'x': unknown key 'columns.mesages'; "
        f"did you mean 'messages'?" in lines
    )
    assert (
        f"{folder}/dataset_info.json: dataset 'x': unknown key 'tags.role'; "
        f"did you mean 'role_tag'?" in lines
    )


def test_typos_in_entries_not_asked_for_are_reported_too(make_data):
    folder = make_data(
        {"x": {"file_name": "x.json"}, "y": {"file_nam": "y.json"}}, {"x.json": ROWS}
    )
    error = resolve_error(folder, "x")
    assert "dataset 'y': unknown key 'file_nam'; did you mean 'file_name'?" in str(error)


def test_unsupported_features_are_named_and_collected(make_data):
    folder = make_data(
        {
            "img": {"file_name": "x.json", "columns": {"images": "pics"}},
            "ms": {"ms_hub_url": "org/data"},
        },
        {"x.json": ROWS},
    )
    lines = resolve_error(folder, "img", "ms").lines
    where = f"{folder}/dataset_info.json"
    assert f"{where}: dataset 'img': columns.images (image inputs) is not supported yet" in lines
    assert f"{where}: dataset 'ms': ms_hub_url (ModelScope datasets) is not supported yet" in lines
    assert all("\n" not in line for line in lines)


def test_unsupported_entries_not_asked_for_are_fine(make_data):
    folder = make_data(
        {"x": {"file_name": "x.json"}, "img": {"ms_hub_url": "org/d"}}, {"x.json": ROWS}
    )
    assert [spec.name for spec in registry.resolve(["x"], folder)] == ["x"]


def test_missing_dataset_info_names_the_path(tmp_path):
    error = resolve_error(tmp_path, "x")
    assert str(error).startswith(f"{tmp_path}/dataset_info.json: not found")


def test_invalid_dataset_info_json_names_the_line(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{\n  "x": {"file_name": "x.json",}\n}')
    assert str(resolve_error(tmp_path, "x")).startswith(
        f"{tmp_path}/dataset_info.json:2: invalid JSON"
    )


def test_unregistered_name_lists_close_matches_or_available_names(make_data):
    folder = make_data(
        {"alpaca_en": {"file_name": "x.json"}, "chat": {"file_name": "x.json"}}, {"x.json": ROWS}
    )
    assert str(resolve_error(folder, "alpaca_eng")) == (
        f"{folder}/dataset_info.json: no dataset named 'alpaca_eng'; did you mean 'alpaca_en'?"
    )
    assert str(resolve_error(folder, "zzz")).endswith("available: alpaca_en, chat")


def test_missing_data_file_names_the_path(make_data):
    folder = make_data({"x": {"file_name": "missing.json"}}, {})
    assert str(resolve_error(folder, "x")) == (
        f"{folder}/missing.json: not found (file_name of dataset 'x' in {folder}/dataset_info.json)"
    )


def test_bad_values_are_reported_together(make_data):
    folder = make_data(
        {
            "x": {
                "file_name": "x.json",
                "formatting": "sharegtp",
                "num_samples": "10",
                "split": "test",
                "subset": "en",
            }
        },
        {"x.json": ROWS},
    )
    lines = resolve_error(folder, "x").lines
    where = f"{folder}/dataset_info.json: dataset 'x'"
    assert (
        f"{where}: formatting 'sharegtp' is not one of alpaca, sharegpt, openai; "
        f"did you mean 'sharegpt'?" in lines
    )
    assert f"{where}: 'num_samples' must be a whole number, not str" in lines
    assert f"{where}: 'subset' applies to hf_hub_url datasets only" in lines
    assert any(line.startswith(f"{where}: 'split' applies to hf_hub_url") for line in lines)


def test_an_entry_needs_exactly_one_source(make_data):
    folder = make_data({"x": {"formatting": "alpaca"}}, {})
    assert "needs exactly one of 'file_name'" in str(resolve_error(folder, "x"))


def test_unreachable_hub_fails_fast_with_advice(make_data, monkeypatch):
    folder = make_data({"x": {"hf_hub_url": "org/data"}}, {})
    [spec] = registry.resolve(["x"], folder)
    for name in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(files, "_hub_reachable", lambda: False)
    start = time.monotonic()
    with pytest.raises(DataError) as caught:
        list(files.iter_files(spec, cache_dir=None))
    assert time.monotonic() - start < 5
    message = str(caught.value)
    assert "dataset 'x': cannot reach the Hugging Face hub to load 'org/data'" in message
    assert "file_name" in message


def test_registry_file_must_map_names_to_objects(tmp_path):
    (tmp_path / "dataset_info.json").write_text(json.dumps({"x": ["x.json"]}))
    assert str(resolve_error(tmp_path, "x")) == (
        f"{tmp_path}/dataset_info.json: dataset 'x': must be an object, not list"
    )


def test_dataset_info_in_another_encoding_names_the_line(tmp_path):
    (tmp_path / "dataset_info.json").write_bytes('{\n  "données": {}\n}'.encode("latin-1"))
    assert str(resolve_error(tmp_path, "x")) == (
        f"{tmp_path}/dataset_info.json:2: not UTF-8 text (byte 0xe9 at column 8); "
        f"save the file as UTF-8"
    )


def test_deeply_nested_dataset_info_is_a_data_error(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{"x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert str(resolve_error(tmp_path, "x")) == (
        f"{tmp_path}/dataset_info.json: nested too deeply to be a dataset registry"
    )


def test_names_too_long_for_the_file_system_are_not_found(make_data, tmp_path):
    long_dir = tmp_path / ("d" * 300)
    assert str(resolve_error(long_dir, "x")).startswith(f"{long_dir}/dataset_info.json: not found")
    folder = make_data({"x": {"file_name": "f" * 300 + ".json"}}, {})
    assert str(resolve_error(folder, "x")).startswith(f"{folder}/{'f' * 300}.json: not found")
