"""Model resolution: aliases, local folders, the hub cache, and a hub that cannot be reached."""

from __future__ import annotations

import shutil
import time

import pytest

from tuneforge.config.schema import DEFAULT_MODEL, ModelArgs
from tuneforge.errors import ModelError
from tuneforge.models import aliases
from tuneforge.models.aliases import ALIASES, resolve_model_path

UNREACHABLE = (
    "model_name_or_path 'tuneforge-tests/no-such-model': not a local folder and the "
    "Hugging Face hub cannot be reached; download it and set model_name_or_path to "
    "its local folder"
)


def _error(name: str, **kwargs: object) -> str:
    with pytest.raises(ModelError) as caught:
        resolve_model_path(ModelArgs(model_name_or_path=name, **kwargs))
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_alias_registry_cannot_be_changed_at_run_time():
    with pytest.raises(TypeError):
        ALIASES["mine"] = ALIASES[DEFAULT_MODEL]  # type: ignore[index]


def test_default_alias_resolves_to_the_cached_folder(default_model_dir):
    assert resolve_model_path(ModelArgs()) == str(default_model_dir)
    assert (default_model_dir / "model.safetensors").is_file()


def test_local_model_folder_resolves_to_itself(tiny_model_dir):
    args = ModelArgs(model_name_or_path=str(tiny_model_dir))
    assert resolve_model_path(args) == str(tiny_model_dir)


def test_folder_without_config_json_is_named(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    assert _error(str(tmp_path)) == (
        f"model_name_or_path '{tmp_path}': folder has no config.json; "
        f"expected a Hugging Face model folder (config.json, weights, "
        f"tokenizer)"
    )


def test_adapter_folder_given_as_the_model_says_where_it_belongs(tmp_path):
    (tmp_path / "adapter_config.json").write_text("{}")
    assert "set adapter_name_or_path to it" in _error(str(tmp_path))


def test_missing_local_folder_names_it_and_the_aliases(tmp_path):
    missing = tmp_path / "no" / "such" / "model"
    assert _error(str(missing)) == (
        f"model_name_or_path '{missing}': no such folder; built-in aliases: {DEFAULT_MODEL}"
    )


def test_misspelt_alias_gets_a_suggestion():
    error = _error("smollm2-135m-instuct")
    assert f"no such folder; did you mean '{DEFAULT_MODEL}'? built-in aliases: " in error


@pytest.fixture
def offline_hub_cache(tmp_path, monkeypatch):
    """An empty hub cache; the hub is made unreachable even on a machine with network."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    return tmp_path / "hub"


def test_unreachable_hub_fails_in_seconds_with_one_line(offline_hub_cache):
    started = time.monotonic()
    message = _error("tuneforge-tests/no-such-model", cache_dir=str(offline_hub_cache))
    assert message == UNREACHABLE
    assert time.monotonic() - started < 5


def test_hub_offline_mode_is_read_when_resolving(offline_hub_cache, monkeypatch):
    from huggingface_hub import HfApi

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("asked the hub in offline mode")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(HfApi, "model_info", must_not_be_called)
    assert _error("tuneforge-tests/no-such-model", cache_dir=str(offline_hub_cache)) == UNREACHABLE


def test_a_hub_that_never_answers_is_given_up_on_time(offline_hub_cache, monkeypatch):
    from huggingface_hub import HfApi

    monkeypatch.setattr(aliases, "HUB_TIMEOUT_S", 0.5)
    monkeypatch.setattr(HfApi, "model_info", lambda *args, **kwargs: time.sleep(30))
    started = time.monotonic()
    assert _error("tuneforge-tests/no-such-model", cache_dir=str(offline_hub_cache)) == UNREACHABLE
    assert time.monotonic() - started < 3


def test_hub_model_already_in_the_cache_needs_no_network(
    offline_hub_cache, tiny_model_dir, monkeypatch
):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = offline_hub_cache / "models--tuneforge-tests--tiny"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = resolve_model_path(
        ModelArgs(model_name_or_path="tuneforge-tests/tiny", cache_dir=str(offline_hub_cache))
    )
    assert folder == str(repo / "snapshots" / commit)
