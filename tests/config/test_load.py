"""Config loading: LLaMA-Factory keys, overrides, and every problem reported at once."""

from __future__ import annotations

import textwrap

import pytest

from tuneforge.config import load_config, save_config
from tuneforge.errors import ConfigError

LF_LORA_SFT = """\
### model
model_name_or_path: smollm2-135m-instruct
trust_remote_code: true

### method
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all

### dataset
dataset: identity,alpaca_en_demo
template: chatml
cutoff_len: 2048
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4

### output
output_dir: saves/llama3-8b/lora/sft
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 1.0e-4
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
"""


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(source, overrides=()) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(source, overrides)
    return info.value.lines


def test_llama_factory_example_loads_unchanged(tmp_path):
    cfg = load_config(write(tmp_path, LF_LORA_SFT))
    assert cfg.data.dataset == ["identity", "alpaca_en_demo"]
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.train.gradient_accumulation_steps == 8
    assert cfg.finetune.lora_target == ["all"]
    assert cfg.finetune.resolved_lora_alpha == 16
    assert cfg.train.report_to == ["none"]
    assert cfg.train.bf16 is True


def test_overrides_win_and_are_parsed_as_yaml(tmp_path):
    cfg = load_config(
        write(tmp_path, LF_LORA_SFT),
        ["learning_rate=2e-4", "num_train_epochs=2", "packing=true", "lora_target=q_proj,v_proj"],
    )
    assert cfg.train.learning_rate == pytest.approx(2e-4)
    assert cfg.train.num_train_epochs == 2
    assert cfg.packing is True
    assert cfg.finetune.lora_target == ["q_proj", "v_proj"]


def test_all_problems_reported_together_each_naming_the_key(tmp_path):
    lines = problems(
        write(
            tmp_path,
            """\
        dataset: identity
        lora_rnak: 8
        learning_rate: -1
        lora_rank: 0
        val_size: 1.5
        lr_scheduler_type: cosin
    """,
        )
    )
    text = "\n".join(lines)
    assert len(lines) == 5
    assert "unknown key 'lora_rnak'; did you mean 'lora_rank'?" in text
    assert "learning_rate=-1" in text and "greater than 0" in text
    assert "lora_rank=0" in text
    assert "val_size=1.5" in text and "share in [0, 1)" in text
    assert "lr_scheduler_type='cosin': allowed: linear, cosine" in text
    assert all(line.startswith(str(tmp_path / "run.yaml")) for line in lines)


def test_wrong_type_names_the_key():
    (line,) = problems({"dataset": "x", "per_device_train_batch_size": "four"})
    assert "per_device_train_batch_size='four'" in line and "integer" in line


def test_unsupported_llama_factory_feature_is_named():
    (line,) = problems({"dataset": "x", "use_unsloth": True})
    assert "'use_unsloth' (a LLaMA-Factory key) is not available in tuneforge: Unsloth" in line


def test_stages_other_tools_name_say_what_to_write_instead():
    (ppo,) = problems({"dataset": "x", "stage": "ppo"})
    assert "trl no longer ships PPO" in ppo and "stage dpo or kto" in ppo
    (orpo,) = problems({"dataset": "x", "stage": "orpo"})
    assert "stage: dpo with pref_loss: orpo" in orpo


def test_preference_keys_are_checked_with_their_stage():
    lines = problems(
        {
            "dataset": "x",
            "stage": "kto",
            "per_device_train_batch_size": 1,
            "pref_beta": 0,
            "ref_model_adapters": "saves/sft",
        }
    )
    assert "config: pref_beta=0: Input should be greater than 0" in lines
    assert any("kto needs per_device_train_batch_size >= 2" in line for line in lines)
    assert any("ref_model_adapters needs ref_model" in line for line in lines)
    (loss,) = problems({"dataset": "x", "stage": "dpo", "pref_loss": "kto_pair"})
    assert loss.startswith("config: pref_loss='kto_pair': allowed: sigmoid, ipo, hinge, orpo")
    (free,) = problems({"dataset": "x", "stage": "dpo", "pref_loss": "simpo", "ref_model": "m"})
    assert "simpo uses no reference model" in free


def test_renamed_keys_map_to_new_names(caplog):
    cfg = load_config(
        {
            "dataset": "x",
            "num_layer_trainable": 3,
            "evaluation_strategy": "no",
            "disable_gradient_checkpointing": False,
        }
    )
    assert cfg.finetune.freeze_trainable_layers == 3
    assert cfg.train.eval_strategy == "no"
    assert cfg.train.gradient_checkpointing is True
    assert "old name of 'freeze_trainable_layers'" in caplog.text


def test_neat_packing_is_tuneforges_packing(caplog):
    assert load_config({"dataset": "x", "neat_packing": True}).data.packing is True
    assert "using packing=True" in caplog.text
    assert load_config({"dataset": "x", "neat_packing": False}).data.packing is None
    both = load_config({"dataset": "x", "packing": True, "neat_packing": False})
    assert both.data.packing is True


@pytest.mark.parametrize(
    ("keys", "batching"),
    [
        ({}, "padding_free"),
        ({"flash_attn": "fa2"}, "padding_free"),
        ({"flash_attn": "sdpa"}, "packed"),  # a row-wide mask: short rows of cutoff_len
        ({"flash_attn": "disabled"}, "packed"),
        ({"packing": True}, "packed"),
        ({"packing": False}, "padded"),
        ({"stage": "pt"}, "packed"),
        ({"stage": "cls"}, "padded"),
        ({"stage": "dpo"}, "padded"),
    ],
)
def test_the_batch_layout_follows_stage_packing_and_attention(keys, batching):
    cfg = load_config({"dataset": "x", **keys})
    assert cfg.batching == batching
    assert cfg.packing is (batching == "packed")


def test_replaced_key_says_what_replaces_it():
    (line,) = problems({"dataset": "x", "max_source_length": 512})
    assert "max_source_length" in line and "cutoff_len" in line


def test_cross_field_checks():
    lines = problems({"dataset": "x", "early_stopping_steps": 3, "bf16": True, "fp16": True})
    text = "\n".join(lines)
    assert "early_stopping_steps needs validation data" in text
    assert "bf16 and fp16 are both true" in text
    (line,) = problems({})
    assert "dataset is required" in line


def test_val_size_share_or_count():
    assert load_config({"dataset": "x", "val_size": 0.1}).data.val_size == pytest.approx(0.1)
    assert load_config({"dataset": "x", "val_size": 20}).data.val_size == 20


def test_bad_yaml_names_the_line(tmp_path):
    (line,) = problems(write(tmp_path, "dataset: x\nlora_rank: [8\nstage: sft\n"))
    assert str(tmp_path / "run.yaml") + ":" in line


def test_missing_file_and_bad_override(tmp_path):
    (line,) = problems(tmp_path / "nope.yaml")
    assert "nope.yaml: config file not found" in line
    (line,) = problems({"dataset": "x"}, ["learning_rate"])
    assert "expected key=value" in line


def test_saved_config_round_trips(tmp_path):
    cfg = load_config({"dataset": "a,b", "lora_rank": 4, "temperature": 0.2})
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


def test_config_in_another_encoding_names_the_line_and_column(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes("dataset: x\ndefault_system: Réponds\n".encode("latin-1"))
    assert problems(path) == [
        f"{path}:2: not UTF-8 text (byte 0xe9 at column 18); save the file as UTF-8"
    ]


def test_config_with_a_byte_order_mark_loads(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_bytes("\ufeffdataset: x\n".encode())
    assert load_config(path).data.dataset == ["x"]


def test_config_with_a_control_character_names_the_line(tmp_path):
    (line,) = problems(write(tmp_path, "dataset: x\nstage: s\x00ft\n"))
    assert line.startswith(f"{tmp_path / 'run.yaml'}:2: character U+0000 is not allowed in YAML")


def test_config_that_is_a_folder(tmp_path):
    assert problems(tmp_path) == [f"{tmp_path}: is a folder; give the YAML config file"]


def test_override_with_unbalanced_brackets_names_the_override():
    (line,) = problems({"dataset": "x"}, ["lora_target=[q_proj"])
    assert line.startswith("override 'lora_target=[q_proj': the value is not valid YAML")


def test_null_override_unsets_the_key_so_the_default_applies(tmp_path):
    path = write(tmp_path, "dataset: x\nval_size: 0.1\nquantization_bit: 4\ncutoff_len: 64\n")
    cfg = load_config(path, ["val_size=null", "quantization_bit=", "cutoff_len=~"])
    assert cfg.data.val_size == 0.0
    assert cfg.model.quantization_bit is None
    assert cfg.data.cutoff_len == 2048
    assert "val_size" not in cfg.flat(only_set=True)


def test_null_override_is_validated_like_any_other(tmp_path):
    assert problems(write(tmp_path, "dataset: x\n"), ["dataset=null", "lern_rate=null"]) == [
        f"{tmp_path / 'run.yaml'}: unknown key 'lern_rate'; did you mean 'learning_rate'?",
        f"{tmp_path / 'run.yaml'}: dataset is required for training "
        f"(names from data/dataset_info.json)",
    ]
    (line,) = problems(write(tmp_path, "dataset: x\n"), ["dataset=null"])
    assert "dataset is required for training" in line


def test_a_list_as_stage_is_a_config_error_not_a_crash():
    (line,) = problems({"dataset": "x", "stage": ["sft"]})
    assert line.startswith("config: stage=['sft']: allowed: sft, pt")


def test_deeply_nested_yaml_is_a_config_error(tmp_path):
    assert problems(write(tmp_path, "dataset: " + "[" * 5000 + "]" * 5000 + "\n")) == [
        f"{tmp_path / 'run.yaml'}: nested too deeply to be a config"
    ]
    assert problems({}, ["lora_target=" + "[" * 5000]) == [
        "override of 'lora_target': the value is nested too deeply"
    ]


def test_config_name_too_long_for_the_file_system(tmp_path):
    path = tmp_path / ("x" * 300 + ".yaml")
    assert problems(path) == [f"{path}: config file not found"]


LF_PREFERENCE = """
### model
model_name_or_path: smollm2-135m-instruct
trust_remote_code: true

### method
stage: {stage}
do_train: true
finetuning_type: lora
lora_rank: 8
lora_target: all
pref_beta: 0.1
pref_loss: sigmoid  # choices: [sigmoid (dpo), orpo, simpo]

### dataset
dataset: dpo_en_demo
template: chatml
cutoff_len: 1024
max_samples: 1000
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4

### output
output_dir: saves/llama3-8b/lora/dpo
logging_steps: 10
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none

### train
per_device_train_batch_size: 1
gradient_accumulation_steps: 8
learning_rate: 5.0e-6
num_train_epochs: 3.0
lr_scheduler_type: cosine
warmup_ratio: 0.1
bf16: true
ddp_timeout: 180000000
resume_from_checkpoint: null
"""


@pytest.mark.parametrize("stage", ["dpo", "rm"])
def test_llama_factory_preference_configs_load_unchanged(tmp_path, stage):
    cfg = load_config(write(tmp_path, LF_PREFERENCE.format(stage=stage)))
    assert cfg.finetune.stage == stage and cfg.finetune.pref_beta == pytest.approx(0.1)
    assert cfg.finetune.preference and not cfg.packing


def test_llama_factory_kto_config_is_told_the_batch_that_works(tmp_path):
    text = LF_PREFERENCE.format(stage="kto").replace("pref_loss: sigmoid", "")
    (line,) = problems(write(tmp_path, text))
    assert "per_device_train_batch_size: 2, gradient_accumulation_steps: 4" in line


def test_null_override_takes_out_a_refused_key_the_file_has(tmp_path):
    path = write(tmp_path, "dataset: x\nuse_unsloth: true\n")
    assert problems(path) and load_config(path, ["use_unsloth=null"]).data.dataset == ["x"]


def test_llama_factory_float_warmup_steps_is_a_share():
    assert load_config({"dataset": "x", "warmup_steps": 0.1}).train.warmup_steps == 0.1


def test_pure_bf16_reads_as_bf16():
    assert load_config({"dataset": "x", "pure_bf16": True}).train.bf16 is True
    assert load_config({"dataset": "x", "pure_bf16": False}).train.bf16 is None
