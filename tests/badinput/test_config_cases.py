"""Bad configs, overrides and config files: each fails in load_config, before any model."""

from __future__ import annotations

import pytest

CONFIG_ERROR = 2

# (keys written into run.yaml, names the error line must contain)
BAD_KEYS = {
    "unknown key": (
        {"lerning_rate": 1e-4},
        ["run.yaml", "unknown key 'lerning_rate'", "did you mean 'learning_rate'"],
    ),
    "wrong type": ({"lora_rank": "eight"}, ["run.yaml", "lora_rank='eight'"]),
    "wrong type bool": ({"do_sample": "maybe"}, ["do_sample='maybe'"]),
    "negative learning rate": (
        {"learning_rate": -1e-4},
        ["learning_rate=-0.0001", "greater than 0"],
    ),
    "val_size above 1": ({"val_size": 1.5}, ["val_size=1.5", "share in [0, 1)"]),
    "negative val_size": ({"val_size": -0.1}, ["val_size=-0.1"]),
    "lora_rank 0": ({"lora_rank": 0}, ["lora_rank=0", "greater than or equal to 1"]),
    "lora_dropout 1": ({"lora_dropout": 1}, ["lora_dropout=1", "less than 1"]),
    "cutoff_len 0": ({"cutoff_len": 0}, ["cutoff_len=0"]),
    "batch size 0": ({"per_device_train_batch_size": 0}, ["per_device_train_batch_size=0"]),
    "top_p above 1": ({"top_p": 1.5}, ["top_p=1.5"]),
    "freeze layers 0": ({"freeze_trainable_layers": 0}, ["freeze_trainable_layers=0"]),
    "bf16 and fp16": ({"bf16": True, "fp16": True}, ["bf16 and fp16 are both true"]),
    "unknown stage": ({"stage": "sfft"}, ["stage='sfft'", "allowed: sft, pt, cls, rm, dpo or kto"]),
    "ppo": ({"stage": "ppo"}, ["stage='ppo'", "trl no longer ships PPO", "use stage dpo or kto"]),
    "unknown pref_loss": (
        {"stage": "dpo", "pref_loss": "kto_pair"},
        ["pref_loss='kto_pair'", "allowed: sigmoid, ipo, hinge, orpo, simpo"],
    ),
    "pref_beta not positive": (
        {"stage": "dpo", "pref_beta": 0},
        ["pref_beta=0", "greater than 0"],
    ),
    "kto with one row per batch": (
        {"stage": "kto", "per_device_train_batch_size": 1},
        ["stage kto needs per_device_train_batch_size >= 2"],
    ),
    "packing for dpo": ({"stage": "dpo", "packing": True}, ["packing does not apply to stage dpo"]),
    "unknown finetuning_type": (
        {"finetuning_type": "qlora"},
        ["finetuning_type='qlora'", "allowed: lora, oft, full or freeze"],
    ),
    "unknown template": ({"template": "chatmll"}, ["template='chatmll'", "chatml"]),
    "quantization_bit 3": ({"quantization_bit": 3}, ["quantization_bit=3"]),
    "unknown report_to": ({"report_to": "slack"}, ["report_to.0='slack'"]),
    "bad fsdp words": ({"fsdp": "half_shard"}, ["fsdp='half_shard'", "full_shard"]),
    "missing dataset": ({"dataset": ...}, ["dataset is required for training"]),
    "replaced key": (
        {"max_source_length": 512},
        ["'max_source_length' is no longer used", "cutoff_len"],
    ),
    "unsupported feature": (
        {"use_unsloth": True},
        ["'use_unsloth'", "is not available in tuneforge: Unsloth"],
    ),
    "eval_strategy without validation": (
        {"eval_strategy": "steps"},
        ["eval_strategy=steps needs validation data"],
    ),
    "val_size and eval_dataset": (
        {"val_size": 0.1, "eval_dataset": "demo"},
        ["val_size and eval_dataset are both set"],
    ),
    "packing for cls": ({"stage": "cls", "packing": True}, ["packing does not apply to stage cls"]),
    "do_predict for pt": ({"stage": "pt", "do_predict": True}, ["do_predict", "needs stage sft"]),
    "dora without lora": (
        {"finetuning_type": "full", "use_dora": True},
        ["use_dora/use_rslora need finetuning_type=lora"],
    ),
    "metric for stage": (
        {"metric_for_best_model": "eval_accuracy"},
        ["metric_for_best_model='eval_accuracy'", "eval_loss"],
    ),
}


@pytest.mark.parametrize(("keys", "names"), BAD_KEYS.values(), ids=BAD_KEYS)
def test_bad_key_in_the_yaml_file(project, keys, names):
    project.write_config(**keys)
    assert project.rejects(["train", "run.yaml"], CONFIG_ERROR, *names)


BAD_OVERRIDES = {
    "unknown key": (["lora_rnk=4"], ["unknown key 'lora_rnk'", "did you mean 'lora_rank'"]),
    "out of range": (["learning_rate=-1"], ["learning_rate=-1"]),
    "unbalanced bracket": (
        ["lora_target=[q_proj"],
        ["override 'lora_target=[q_proj'", "not valid YAML"],
    ),
    "unbalanced brace": (["lora_target={q_proj"], ["override 'lora_target={q_proj'"]),
    "without =": (["lora_rank"], ["override 'lora_rank'", "expected key=value"]),
    "without a key": (["=4"], ["override '=4'", "expected key=value"]),
    "null leaves a required key unset": (["dataset=null"], ["dataset is required"]),
    "after a flag": (["--force", "lora_rank=0"], ["lora_rank=0"]),
}


@pytest.mark.parametrize(("words", "names"), BAD_OVERRIDES.values(), ids=BAD_OVERRIDES)
def test_bad_override(project, words, names):
    assert project.rejects(["train", "run.yaml", *words], CONFIG_ERROR, *names)


BAD_FILES = {
    "not UTF-8": (
        "dataset: demo\ndefault_system: R\xe9ponds\n".encode("latin-1"),
        ["run.yaml:2:", "not UTF-8", "column 18"],
    ),
    "UTF-16": ("dataset: demo\n".encode("utf-16"), ["run.yaml:1:", "not UTF-8"]),
    "a list": ("- dataset: demo\n", ["run.yaml", "expected a mapping", "got list"]),
    "a scalar": ("just some words\n", ["run.yaml", "got str"]),
    "syntax error": ("dataset: demo\nlora_target: [q_proj\nstage: sft\n", ["run.yaml:3:"]),
    "bad indentation": ("dataset: demo\n  stage: sft\n", ["run.yaml:2:"]),
    "control character": ("dataset: demo\nstage: s\x07ft\n", ["run.yaml:2:", "U+0007"]),
    "unhashable key": ("? [a, b]\n: 1\n", ["run.yaml:1:", "unhashable"]),
    "python tag": ("dataset: !!python/object:os.system x\n", ["run.yaml:1:"]),
}


@pytest.mark.parametrize(("content", "names"), BAD_FILES.values(), ids=BAD_FILES)
def test_bad_config_file(project, content, names):
    project.write("run.yaml", content)
    assert project.rejects(["train", "run.yaml"], CONFIG_ERROR, *names)


def test_missing_config_file(project):
    assert project.rejects(["train", "nope.yaml"], CONFIG_ERROR, "nope.yaml: config file not found")


def test_config_that_is_a_folder(project):
    assert project.rejects(["plan", "data"], CONFIG_ERROR, "data: is a folder")


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "run.yaml", "--no-data"],
        ["data", "inspect", "run.yaml"],
        ["sweep", "run.yaml", "--max-steps", "1", "--lr", "1e-4,2e-4"],
        ["eval", "run.yaml", "--adapter", "saves/run"],
        [
            "predict",
            "run.yaml",
            "--adapter",
            "saves/run",
            "--input",
            "data/demo.jsonl",
            "--out",
            "labels.jsonl",
        ],
    ],
    ids=lambda argv: argv[0],
)
def test_every_command_validates_its_overrides(project, argv):
    assert project.rejects([*argv, "lora_rank=0"], CONFIG_ERROR, "lora_rank=0")


@pytest.mark.parametrize("command", ["chat", "export"])
def test_model_commands_validate_their_overrides(project, command):
    extra = ["--out", "merged"] if command == "export" else ["--query", "hi"]
    assert project.rejects([command, *extra, "top_p=1.5"], CONFIG_ERROR, "top_p=1.5")
