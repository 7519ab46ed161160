"""Config keys that scale a run (QLoRA, RoPE, DeepSpeed/FSDP, Liger): one line per bad input,
from the config itself or, once it is valid, from this machine (packages, files, GPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tuneforge import cli
from tuneforge.config import check_environment, load_config
from tuneforge.config.scale import read_engine_config
from tuneforge.errors import ConfigError

REAL_FIND_SPEC = importlib.util.find_spec


def problems(raw: dict) -> list[str]:
    """The config's own problems or, when it has none, this machine's with it."""
    with pytest.raises(ConfigError) as info:
        check_environment(load_config({"dataset": "x", **raw}))
    return info.value.lines


@pytest.fixture()
def without(monkeypatch):
    """Make the named packages look uninstalled."""

    def hide(*names: str) -> None:
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name in names else REAL_FIND_SPEC(name, *a),
        )

    return hide


def test_qlora_keys_load_from_a_llama_factory_config():
    cfg = load_config(
        {
            "dataset": "x",
            "quantization_bit": 4,
            "quantization_method": "bnb",
            "quantization_type": "fp4",
            "double_quantization": False,
        }
    )
    assert (cfg.model.quantization_bit, cfg.model.quantization_type) == (4, "fp4")
    assert cfg.model.double_quantization is False


def test_quantization_bit_other_than_4_or_8():
    (line,) = problems({"quantization_bit": 3})
    assert line == "config: quantization_bit=3: allowed: 4 or 8"


def test_qlora_needs_lora():
    (line,) = problems({"quantization_bit": 4, "finetuning_type": "full"})
    assert "quantization_bit=4 (QLoRA)" in line
    assert "needs finetuning_type=lora (it is full)" in line


def test_missing_bitsandbytes_names_the_extra(without):
    without("bitsandbytes")
    (line,) = problems({"quantization_bit": 8})
    assert line == (
        "config: quantization_bit=8 needs the bitsandbytes package: pip install 'tuneforge[qlora]'"
    )


def test_rope_keys():
    cfg = load_config({"dataset": "x", "rope_scaling": "yarn", "rope_factor": 4})
    assert (cfg.model.rope_scaling, cfg.model.rope_factor) == ("yarn", 4.0)
    lines = problems({"rope_scaling": "ntk", "rope_factor": 0.5})
    assert any("rope_scaling='ntk': allowed: linear, dynamic, yarn or llama3" in x for x in lines)
    assert any("rope_factor=0.5" in x and "greater than or equal to 1" in x for x in lines)
    (line,) = problems({"rope_factor": 2})
    assert "rope_factor=2.0 needs rope_scaling" in line


def test_deepspeed_file_that_does_not_exist(tmp_path, without):
    without("deepspeed")
    missing = tmp_path / "ds.json"
    cfg = load_config({"dataset": "x", "deepspeed": str(missing)})  # the config alone is fine
    with pytest.raises(ConfigError) as info:
        check_environment(cfg)
    lines = info.value.lines
    assert {problem.key for problem in info.value.problems} == {"deepspeed"}
    assert (
        f"config: deepspeed='{missing}': no such file; ready-made ones are in "
        f"examples/deepspeed/" in lines
    )
    assert (
        "config: deepspeed needs the deepspeed package: pip install 'tuneforge[deepspeed]'" in lines
    )


def test_engine_files_that_do_not_parse(tmp_path):
    bad_json = tmp_path / "ds.json"
    bad_json.write_text('{"zero_optimization": {"stage": 3,}}')
    bad_yaml = tmp_path / "fsdp.yaml"
    bad_yaml.write_text("version: 2\n  reshard: [true\n")
    a_list = tmp_path / "list.json"
    a_list.write_text("[1, 2]")
    lines = problems({"deepspeed": str(bad_json)})
    assert any(f"deepspeed='{bad_json}': line 1: not valid JSON" in x for x in lines)
    (line,) = problems({"fsdp": True, "fsdp_config": str(bad_yaml)})
    assert line.startswith(f"config: fsdp_config='{bad_yaml}': line 2: not valid YAML")
    lines = problems({"deepspeed": str(bad_json), "fsdp": True})  # the config's own, first
    assert lines == ["config: deepspeed and fsdp are both set; choose one engine"]
    lines = problems({"fsdp": "full_shard", "fsdp_config": str(a_list)})
    assert lines == [f"config: fsdp_config='{a_list}': expected a mapping of settings, got list"]


def test_fsdp_options_and_config(tmp_path):
    settings = tmp_path / "fsdp.json"
    settings.write_text(json.dumps({"version": 2}))
    cfg = load_config(
        {"dataset": "x", "fsdp": "full_shard auto_wrap", "fsdp_config": str(settings)}
    )
    assert cfg.train.fsdp == "full_shard auto_wrap"
    (line,) = problems({"fsdp": "full_shard everywhere"})
    assert "fsdp='full_shard everywhere': allowed: true, or words from full_shard" in line
    (line,) = problems({"fsdp_config": str(settings)})
    assert "fsdp_config is set but fsdp is not; add fsdp: true" in line


def test_engine_files_are_not_checked_when_not_training(tmp_path):
    cfg = load_config({"do_train": False, "deepspeed": str(tmp_path / "gone.json")})
    check_environment(cfg)
    assert cfg.train.deepspeed.endswith("gone.json")


def test_liger_kernel_needs_its_package(without):
    without("liger_kernel")
    lines = problems({"enable_liger_kernel": True})
    assert (
        "config: enable_liger_kernel needs the liger_kernel package: pip install "
        "'tuneforge[liger]'" in lines
    )


def test_cli_reports_each_problem_on_one_line(tmp_path, capsys, without):
    without("bitsandbytes")
    config = tmp_path / "qlora.yaml"
    config.write_text(
        f"dataset: x\nquantization_bit: 4\nfinetuning_type: freeze\n"
        f"deepspeed: {tmp_path / 'nope.json'}\n"
    )
    expected = {"freeze": 1, "lora": 3}  # QLoRA needs lora; bitsandbytes, the file, deepspeed
    for finetuning_type, count in expected.items():
        code = cli.main(["train", str(config), f"finetuning_type={finetuning_type}"])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == ConfigError.exit_code
        assert all(line.startswith("tuneforge: error: ") for line in lines)
        assert len(lines) == count, lines
        assert not any("Traceback" in line for line in lines)


EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    ("name", "stage", "offload"),
    [
        ("ds_z2_config.json", 2, False),
        ("ds_z3_config.json", 3, False),
        ("ds_z3_offload_config.json", 3, True),
    ],
)
def test_shipped_deepspeed_configs(name, stage, offload):
    zero = read_engine_config("deepspeed", str(EXAMPLES / "deepspeed" / name))["zero_optimization"]
    assert zero["stage"] == stage
    assert ("offload_optimizer" in zero) is offload


@pytest.mark.parametrize(
    ("name", "offload"), [("fsdp_full_shard.yaml", False), ("fsdp_offload.yaml", True)]
)
def test_shipped_fsdp_configs_reach_accelerate(tmp_path, name, offload):
    from transformers import TrainingArguments

    settings = read_engine_config("fsdp_config", str(EXAMPLES / "fsdp" / name))
    args = TrainingArguments(
        output_dir=str(tmp_path), fsdp=True, fsdp_config=settings, use_cpu=True, report_to="none"
    )
    assert args.fsdp_plugin_args["fsdp_version"] == 2
    assert args.fsdp_plugin_args["reshard_after_forward"] is True
    assert args.fsdp_plugin_args.get("cpu_offload", False) is offload


def test_shipped_qlora_example_loads():
    cfg = load_config(EXAMPLES / "qlora.yaml")
    assert (cfg.model.quantization_bit, cfg.finetune.finetuning_type) == (4, "lora")


def test_qlora_is_refused_with_sharded_weights(without):
    without("deepspeed")  # so a config with deepspeed always has a problem to report
    stage3 = str(EXAMPLES / "deepspeed" / "ds_z3_config.json")
    lines = problems({"quantization_bit": 4, "deepspeed": stage3})
    assert any(
        "quantization_bit=4 with DeepSpeed ZeRO-3: bitsandbytes weights cannot be sharded" in line
        for line in lines
    )
    (line,) = problems({"quantization_bit": 8, "fsdp": True})
    assert "quantization_bit=8 with fsdp" in line
    stage2 = str(EXAMPLES / "deepspeed" / "ds_z2_config.json")
    lines = problems({"quantization_bit": 4, "deepspeed": stage2})
    assert lines == [
        ("config: deepspeed needs the deepspeed package: pip install 'tuneforge[deepspeed]'")
    ]


def test_engine_files_that_are_not_text_or_not_there(tmp_path):
    latin = tmp_path / "ds.json"
    latin.write_bytes('{"comment": "réglage"}'.encode("latin-1"))
    control = tmp_path / "fsdp.yaml"
    control.write_text("version: 2\nreshard: \x00\n")
    assert problems({"fsdp": True, "fsdp_config": str(control)}) == [
        (
            f"config: fsdp_config='{control}': line 2: not valid YAML (character U+0000 is not "
            f"allowed in YAML)"
        )
    ]
    assert (
        f"config: {latin}:1: not UTF-8 text (byte 0xe9 at column 15); save the file as "
        f"UTF-8" in problems({"deepspeed": str(latin)})
    )
    for name in ("x" * 300 + ".json", "~nosuchuser/ds.json"):
        assert (
            f"config: deepspeed='{name}': no such file; ready-made ones are in "
            f"examples/deepspeed/" in problems({"deepspeed": name})
        )


def test_deepspeed_zero_optimization_that_is_not_a_mapping(tmp_path, without):
    without("deepspeed")
    odd = tmp_path / "ds.json"
    odd.write_text('{"zero_optimization": [3]}')
    assert problems({"deepspeed": str(odd)}) == [
        "config: deepspeed needs the deepspeed package: pip install 'tuneforge[deepspeed]'"
    ]
