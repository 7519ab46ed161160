"""`tuneforge export merge.yaml`: LLaMA-Factory's merge YAML, its shard size and legacy format,
flags over the file, and one line per bad key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tuneforge.cli import main

# 10 kB shards: the tiny model's layers (4-16 kB matrices) spread over many files.
SHARD_GB = 0.00001
SHARD_BYTES = 10_000


def write_yaml(path: Path, **keys: object) -> str:
    path.write_text(yaml.safe_dump(keys), encoding="utf-8")
    return str(path)


def merge_yaml(tmp_path: Path, base: Path, adapter: Path, **keys: object) -> str:
    """A merge YAML as LLaMA-Factory's examples/merge_lora ones are written."""
    return write_yaml(
        tmp_path / "merge.yaml",
        model_name_or_path=str(base),
        adapter_name_or_path=str(adapter),
        template="chatml",
        trust_remote_code=True,
        finetuning_type="lora",
        export_device="cpu",
        **keys,
    )


def run_cli(capsys, *argv: str) -> tuple[int, list[str]]:
    code = main(["--quiet", *argv])
    err = capsys.readouterr().err.splitlines()
    return code, [line for line in err if line.startswith("tuneforge")]


def shard_tensors(folder: Path, index_name: str) -> dict[str, list[str]]:
    """Each weight file of a sharded folder and the tensors its index puts there."""
    index = json.loads((folder / index_name).read_text())
    files: dict[str, list[str]] = {}
    for tensor, name in index["weight_map"].items():
        files.setdefault(name, []).append(tensor)
    assert set(files) == {path.name for path in folder.iterdir() if path.name in files}
    return files


def tensor_bytes(folder: Path, name: str) -> dict[str, int]:
    if name.endswith(".bin"):
        tensors = torch.load(folder / name, weights_only=True)
    else:
        from safetensors.torch import load_file

        tensors = load_file(folder / name)
    return {key: value.numel() * value.element_size() for key, value in tensors.items()}


def test_a_merge_yaml_writes_shards_of_the_asked_size(
    capsys, tmp_path, tiny_model_dir, tiny_adapter_dir, unmerged
):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "merged"
    config = merge_yaml(
        tmp_path,
        tiny_model_dir,
        tiny_adapter_dir,
        export_dir=str(out),
        export_size=SHARD_GB,
        export_legacy_format=False,
    )
    code, err = run_cli(capsys, "export", config)
    assert (code, err) == (0, [])
    files = shard_tensors(out, "model.safetensors.index.json")
    assert len(files) > 5 and all(name.endswith(".safetensors") for name in files)
    for name, tensors in files.items():
        sizes = tensor_bytes(out, name)
        assert set(sizes) == set(tensors)
        assert len(sizes) == 1 or sum(sizes.values()) <= SHARD_BYTES, (name, sizes)
    assert not list(out.glob("*.bin"))

    ids = torch.tensor([[1, 9690, 198, 2683, 359, 346, 47, 2, 198]])
    with torch.no_grad():
        expected = unmerged(tiny_adapter_dir)(input_ids=ids).logits
        got = AutoModelForCausalLM.from_pretrained(out)(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    saved = yaml.safe_load((out / "tuneforge_config.yaml").read_text())
    # The YAML's run keys are kept; the adapter is inside the weights now.
    assert saved["template"] == "chatml" and saved["trust_remote_code"] is True
    assert saved["model_name_or_path"] == str(tiny_model_dir)
    assert saved["adapter_name_or_path"] is None


def test_legacy_format_writes_bin_files_that_load(
    capsys, tmp_path, tiny_model_dir, tiny_adapter_dir
):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "legacy"
    config = merge_yaml(
        tmp_path,
        tiny_model_dir,
        tiny_adapter_dir,
        export_dir=str(out),
        export_legacy_format=True,
    )
    assert run_cli(capsys, "export", config) == (0, [])
    assert not list(out.glob("*.safetensors*"))
    assert (out / "pytorch_model.bin").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(out)  # the export's own check did this too
    assert not any("lora" in name for name, _ in loaded.named_parameters())

    sharded = tmp_path / "legacy-sharded"
    config = merge_yaml(
        tmp_path,
        tiny_model_dir,
        tiny_adapter_dir,
        export_dir=str(sharded),
        export_legacy_format=True,
        export_size=SHARD_GB,
    )
    assert run_cli(capsys, "export", config) == (0, [])
    files = shard_tensors(sharded, "pytorch_model.bin.index.json")
    assert len(files) > 5 and all(name.startswith("pytorch_model-") for name in files)
    assert not list(sharded.glob("*.safetensors*"))


def test_flags_and_overrides_win_over_the_yaml(capsys, tmp_path, tiny_model_dir, tiny_adapter_dir):
    from tuneforge.infer import resolve_model

    in_yaml, flagged = tmp_path / "from-yaml", tmp_path / "from-flag"
    other_adapter = tmp_path / "nowhere"  # the YAML's adapter; --adapter replaces it
    config = merge_yaml(
        tmp_path,
        tiny_model_dir,
        other_adapter,
        export_dir=str(in_yaml),
        export_size=SHARD_GB,
        export_legacy_format=True,
    )
    argv = ["export", config, "--adapter", str(tiny_adapter_dir), "--out", str(flagged)]
    code, err = run_cli(capsys, *argv, "export_legacy_format=false", "export_size=null")
    assert (code, err) == (0, [])
    assert not in_yaml.exists()
    assert sorted(path.name for path in flagged.glob("*.safetensors")) == ["model.safetensors"]
    assert resolve_model(flagged).config.data.template == "chatml"


def test_bad_keys_and_values_get_one_line_each_naming_the_file(capsys, tmp_path, tiny_model_dir):
    config = write_yaml(
        tmp_path / "bad.yaml",
        model_name_or_path=str(tiny_model_dir),
        templat="chatml",
        export_dir=str(tmp_path / "out"),
        export_sise=2,
        export_device="gpu",
        export_legacy_format="often",
        export_quantization_bit=4,
        export_quantization_dataset="data/c4_demo.json",
        export_hub_model_id="me/model",
        infer_backend="huggingface",
    )
    code, err = run_cli(capsys, "export", config)
    assert code == 2 and all(line.startswith(f"tuneforge: error: {config}: ") for line in err)
    said = [line.removeprefix(f"tuneforge: error: {config}: ") for line in err]
    assert sorted(said) == sorted(
        [
            "unknown key 'templat'; did you mean 'template'?",
            "unknown key 'export_sise'; did you mean 'export_size'?",
            "export_device='gpu': allowed: cpu or auto",
            "export_legacy_format='often': Input should be a valid boolean, unable to "
            "interpret input",
            next(line for line in said if line.startswith("export_quantization_bit, ")),
            next(line for line in said if line.startswith("export_hub_model_id: ")),
            "infer_backend is a key of inference YAMLs: use the file with `tuneforge chat` "
            "or `api`",
        ]
    )
    quantization = next(line for line in said if line.startswith("export_quantization_bit, "))
    assert "export_quantization_dataset" in quantization and "q8_0" in quantization
    assert "quantization_bit: 4" in quantization
    assert "Hugging Face Hub" in next(line for line in said if line.startswith("export_hub"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("keys", "out", "says"),
    [
        ({}, None, "export_dir is not set"),
        ({"export_size": 0}, "merged", "export_size=0: Input should be greater than 0"),
        (
            {"export_size": 1},
            "model.gguf",
            "export_size and export_legacy_format apply to a Hugging Face folder",
        ),
    ],
)
def test_an_export_yaml_that_cannot_be_done_is_one_line(
    capsys, tmp_path, tiny_model_dir, keys, out, says
):
    config = write_yaml(tmp_path / "merge.yaml", model_name_or_path=str(tiny_model_dir), **keys)
    argv = ["--out", str(tmp_path / out)] if out else []
    code, err = run_cli(capsys, "export", config, *argv)
    assert code == 2 and len(err) == 1 and says in err[0], err
