"""resolve_model: what each kind of folder loads, with the base model left in the config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tuneforge.config import load_config, save_config
from tuneforge.errors import ModelError
from tuneforge.infer import resolve_model
from tuneforge.layout import CONFIG_NAME, MARKER

BASE = "org/base-model"  # the resolver reads names; it loads nothing, so the base need not exist


def tuneforge_output(folder: Path, weights_from: Path, **trained: object) -> Path:
    """`weights_from`'s files and the config a run trained with, as tuneforge leaves them."""
    shutil.copytree(weights_from, folder)
    config = load_config({"model_name_or_path": BASE, "do_train": False, **trained})
    save_config(config, folder / CONFIG_NAME)
    return folder


@pytest.fixture
def lora_run(tmp_path, tiny_adapter_dir) -> Path:
    return tuneforge_output(tmp_path / "lora-run", tiny_adapter_dir, template="chatml")


def test_each_kind_of_folder_names_its_base_weights_and_adapter(
    tiny_adapter_dir, tiny_model_dir, lora_run, tmp_path
):
    peft_base = json.loads((tiny_adapter_dir / "adapter_config.json").read_text())[
        "base_model_name_or_path"
    ]
    assert peft_base == str(tiny_model_dir)
    full_run = tuneforge_output(tmp_path / "full-run", tiny_model_dir, finetuning_type="full")
    # An export holds merged weights beside the LoRA run's config (finetuning_type lora).
    merged = tuneforge_output(tmp_path / "merged", tiny_model_dir)
    expected = {  # folder: (base, weights, adapter)
        tiny_adapter_dir: (peft_base, peft_base, str(tiny_adapter_dir)),
        lora_run: (BASE, BASE, str(lora_run)),
        full_run: (BASE, str(full_run), None),
        merged: (BASE, str(merged), None),
        tiny_model_dir: (str(tiny_model_dir), str(tiny_model_dir), None),
    }
    for folder, (base, weights, adapter) in expected.items():
        model = resolve_model(folder)
        assert (model.base, model.weights, model.adapter) == (base, weights, adapter), folder
        assert model.config.model.model_name_or_path == base, folder
        args = model.load_args()
        assert (args.model_name_or_path, args.adapter_name_or_path) == (weights, adapter), folder
    assert resolve_model(lora_run).config.data.template == "chatml"  # its saved config
    assert resolve_model(full_run).config.finetune.finetuning_type == "full"
    assert resolve_model(merged).config.finetune.finetuning_type == "lora"


def test_an_interrupted_run_loads_its_last_complete_checkpoint(
    tiny_adapter_dir, tiny_model_dir, tmp_path, caplog
):
    run = tmp_path / "lora-run"
    run.mkdir()
    save_config(
        load_config({"model_name_or_path": str(tiny_model_dir), "do_train": False}),
        run / CONFIG_NAME,
    )
    with pytest.raises(ModelError, match="has not finished and has no complete checkpoint"):
        resolve_model(run)
    for step in (2, 4):
        shutil.copytree(tiny_adapter_dir, run / f"checkpoint-{step}")
    (run / "checkpoint-2" / MARKER).write_text('{"step": 2}')  # checkpoint-4 is incomplete
    model = resolve_model(run)
    assert (model.weights, model.adapter) == (str(tiny_model_dir), str(run / "checkpoint-2"))
    assert model.config.model.model_name_or_path == str(tiny_model_dir)
    assert (
        "has not finished (no final model): using its last complete checkpoint, "
        "checkpoint-2" in caplog.text
    )

    full = tmp_path / "full-run"
    full.mkdir()
    save_config(load_config({"model_name_or_path": BASE, "do_train": False}), full / CONFIG_NAME)
    shutil.copytree(tiny_model_dir, full / "checkpoint-3")
    (full / "checkpoint-3" / MARKER).write_text('{"step": 3}')
    model = resolve_model(full)
    assert (model.base, model.weights, model.adapter) == (BASE, str(full / "checkpoint-3"), None)


def test_a_bad_folder_is_one_model_error_line(tmp_path):
    (tmp_path / "file.txt").write_text("not a model")
    for folder, says in [
        (tmp_path / "missing", "no such folder"),
        (tmp_path / "file.txt", "no such folder"),
        (tmp_path, "no adapter_config.json (nor config.json)"),
    ]:
        with pytest.raises(ModelError) as err:
            resolve_model(folder)
        assert len(err.value.lines) == 1 and err.value.lines[0].startswith(f"adapter '{folder}'")
        assert says in err.value.lines[0]


def test_a_given_config_is_used_instead_of_the_folders_and_left_as_it_is(
    tiny_adapter_dir, tiny_model_dir, lora_run, tmp_path
):
    given = load_config(
        {"model_name_or_path": str(tiny_model_dir), "template": "chatml", "do_train": False}
    )
    model = resolve_model(lora_run, given)
    assert model.config is given and given.model.adapter_name_or_path is None
    assert (model.weights, model.adapter) == (str(tiny_model_dir), str(lora_run))

    yaml = tmp_path / "chat.yaml"
    yaml.write_text(f"model_name_or_path: {tiny_model_dir}\ndo_train: false\n")
    model = resolve_model(tiny_adapter_dir, yaml, ["template=llama3"])
    assert model.config.data.template == "llama3" and model.adapter == str(tiny_adapter_dir)

    # A config naming an adapter, and no folder: that adapter, resolved like a folder.
    naming = load_config({"adapter_name_or_path": str(lora_run), "do_train": False})
    model = resolve_model(None, naming)
    assert model.config is naming and model.adapter == str(lora_run)


def test_overrides_apply_on_top_of_the_folders_config(lora_run, tiny_model_dir):
    model = resolve_model(lora_run, overrides=["infer_dtype=float32"])
    assert model.config.model.infer_dtype == "float32" and model.config.data.template == "chatml"
    assert (model.base, model.adapter) == (BASE, str(lora_run))

    default = resolve_model(overrides={"model_name_or_path": str(tiny_model_dir)})
    assert (default.base, default.weights, default.adapter) == (
        str(tiny_model_dir),
        str(tiny_model_dir),
        None,
    )


def test_changed_settings_and_the_base_model_are_new_objects(lora_run):
    model = resolve_model(lora_run)
    exact = model.with_settings(infer_dtype="float32")
    assert exact.config.model.infer_dtype == "float32" and model.config.model.infer_dtype == "auto"
    assert (exact.weights, exact.adapter) == (model.weights, model.adapter)
    base = model.base_model()
    assert (base.weights, base.adapter, base.config) == (BASE, None, model.config)
