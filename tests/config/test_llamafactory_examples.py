"""LLaMA-Factory's own example configs (issue 15): they run in tuneforge unchanged apart from
the model, the template and the length.

The fixtures in tests/fixtures/llamafactory/ hold the keys and values of LLaMA-Factory's
examples, each file under the path it has there (its header names the commit read); only
model_name_or_path (a placeholder, replaced here by the tiny model), cutoff_len and, where
the example names a template tuneforge does not have, the template differ. The tests point
dataset_dir at small data written under the example's own dataset names, and set output_dir
and max_steps: 2.

Each training example reads, or is refused by design (multimodal models: listed with the key
and reason of each line), or is a strict xfail naming the line that stops it. A handful of
examples that each take another code path train two steps on the tiny model.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import yaml

import tuneforge
from tuneforge.config import check_environment, load_config, read_export_config, read_infer_config
from tuneforge.config.deploy import check_backend
from tuneforge.config.llamafactory_keys import RENAMED_KEYS
from tuneforge.errors import ConfigError, Problem

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "llamafactory"
PLACEHOLDER = "PLACEHOLDER_MODEL"
# Keys the tests set themselves (the model is the file's placeholder).
SET_HERE = {"model_name_or_path", "dataset_dir", "output_dir", "max_steps"}

# Training examples that read as they are.
READS = [
    "extras/adam_mini/qwen2_full_sft.yaml",
    "extras/apollo/llama3_full_sft.yaml",
    "extras/badam/llama3_full_sft.yaml",
    "extras/badam/llama3_full_sft_ds3.yaml",
    "extras/dft/qwen2_full_sft.yaml",
    "extras/galore/llama3_full_sft.yaml",
    "extras/llama_pro/llama3_freeze_sft.yaml",
    "extras/loraplus/llama3_lora_sft.yaml",
    "extras/muon/qwen2_full_sft.yaml",
    "extras/oft/llama3_oft_sft.yaml",
    "extras/pissa/llama3_lora_sft.yaml",
    "train_lora/llama3_lora_pretrain.yaml",
    "train_lora/llama3_lora_sft.yaml",
    "train_lora/qwen3_lora_pretrain.yaml",
    "train_lora/qwen3_lora_sft.yaml",
]

# Refused by design: key -> what its line says (vision models are not supported).
VISION = {
    "image_max_pixels": "multimodal (vision) models are not supported",
    "video_max_pixels": "multimodal (video) models are not supported",
    "template": "template='qwen2_vl': allowed: chatml, qwen, llama3",
}
REFUSED = {
    "extras/oft/qwen2_5vl_oft_sft.yaml": VISION,
    "train_lora/qwen2vl_lora_sft.yaml": VISION,
}

# Prediction only (do_predict, no do_train): `tuneforge eval` runs it; `tuneforge train` says so.
PREDICT = ["extras/nlg_eval/llama3_lora_predict.yaml"]

EXPORTS = ["merge_lora/llama3_lora_sft.yaml", "merge_lora/qwen3_lora_sft.yaml"]
EXPORT_REFUSED = {"merge_lora/qwen2vl_lora_sft.yaml": {"template": VISION["template"]}}
INFERENCE = ["inference/llama3_lora_sft.yaml", "inference/qwen3_lora_sft.yaml"]

# The examples that train two steps, each with the log line of the path it takes.
TRAINED = {
    "extras/loraplus/llama3_lora_sft.yaml": "Optimizer: LoRA+",
    "extras/pissa/llama3_lora_sft.yaml": "PiSSA adapter converted to plain LoRA",
    "extras/badam/llama3_full_sft.yaml": "Optimizer: BAdam, one decoder layer at a time",
    "extras/muon/qwen2_full_sft.yaml": "Optimizer: Muon on",
    "extras/galore/llama3_full_sft.yaml": "galore_adamw_layerwise on",
    "extras/apollo/llama3_full_sft.yaml": "apollo_adamw_layerwise on",
    "extras/dft/qwen2_full_sft.yaml": "full fine-tuning",
    "extras/oft/llama3_oft_sft.yaml": "oft fine-tuning",
    "extras/llama_pro/llama3_freeze_sft.yaml": "use_llama_pro: training the expanded layers "
    "1, 3, 5, 7, 9, 11, 13, 15",
    "train_lora/llama3_lora_sft.yaml": "lora fine-tuning",
    "train_lora/llama3_lora_pretrain.yaml": "lora fine-tuning",
}
# The keys that need an optional package of the `optimizers` extra.
NEEDS = {
    "extras/badam/llama3_full_sft.yaml": "badam",
    "extras/galore/llama3_full_sft.yaml": "galore_torch",
    "extras/apollo/llama3_full_sft.yaml": "apollo_torch",
}

ALPACA = [
    {"instruction": "What is two plus two?", "input": "", "output": "Four."},
    {"instruction": "Name a primary colour.", "input": "", "output": "Red."},
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
    {"instruction": "Translate 'cat' to French.", "input": "", "output": "Chat."},
    {"instruction": "你好吗？", "input": "", "output": "我很好，谢谢。"},
    {"instruction": "Give me a synonym for happy.", "input": "", "output": "Joyful."},
    {"instruction": "How many legs does a spider have?", "input": "", "output": "Eight."},
    {"instruction": "Who are you?", "input": "", "output": "An assistant."},
]


def written(name: str) -> dict:
    return yaml.safe_load((FIXTURES / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def example_data(tmp_path_factory) -> Path:
    """The example's dataset names (identity, alpaca_en_demo, c4_demo) over a few rows."""
    folder = tmp_path_factory.mktemp("lf-data")
    for name in ("identity", "alpaca_en_demo"):
        (folder / f"{name}.json").write_text(json.dumps(ALPACA, ensure_ascii=False), "utf-8")
    text = [{"text": f"{row['instruction']} {row['output']}"} for row in ALPACA]
    (folder / "c4_demo.jsonl").write_text("\n".join(map(json.dumps, text)), encoding="utf-8")
    info = {
        "identity": {"file_name": "identity.json"},
        "alpaca_en_demo": {"file_name": "alpaca_en_demo.json"},
        "c4_demo": {"file_name": "c4_demo.jsonl", "columns": {"prompt": "text"}},
    }
    (folder / "dataset_info.json").write_text(json.dumps(info), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def expanded_model(tmp_path_factory, tokenizer, make_tiny_model) -> Path:
    """LLaMA Pro's model: the example trains freeze_trainable_layers: 8, the layers that
    expand.sh's --num_expand 8 inserted; here 8 tiny layers grow to 16."""
    from tuneforge.models.expand import expand_blocks

    base = make_tiny_model(tmp_path_factory.mktemp("tiny-llama-8"), tokenizer, layers=8)
    return expand_blocks(base, tmp_path_factory.mktemp("pro") / "model", 8).output_dir


def overrides(model: Path, data: Path, out: Path) -> list[str]:
    return [
        f"model_name_or_path={model}",
        f"dataset_dir={data}",
        f"output_dir={out}",
        "max_steps=2",
    ]


def problems_of(call) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        call()
    lines = str(caught.value).splitlines()
    assert len(lines) == len(caught.value.problems)  # one line each
    return caught.value.problems


def assert_refused(found: list[Problem], expected: dict[str, str]) -> None:
    """Exactly the listed keys, each line naming its key and saying why."""
    assert sorted(problem.key or "" for problem in found) == sorted(expected)
    for problem in found:
        assert problem.key and problem.key in problem.message
        assert expected[problem.key] in problem.message


def test_every_fixture_has_an_expected_outcome():
    listed = {*READS, *REFUSED, *PREDICT, *EXPORTS, *EXPORT_REFUSED, *INFERENCE}
    found = {str(path.relative_to(FIXTURES)) for path in FIXTURES.rglob("*.yaml")}
    assert found == listed
    assert set(TRAINED) <= set(READS)
    for name in found:
        assert written(name)["model_name_or_path"] == PLACEHOLDER, name


@pytest.mark.parametrize("name", READS)
def test_training_example_reads_as_written(name, tiny_model_dir, example_data, tmp_path):
    cfg = load_config(FIXTURES / name, overrides(tiny_model_dir, example_data, tmp_path))
    raw = written(name)
    flat = cfg.flat()
    for key, value in raw.items():
        key = RENAMED_KEYS.get(key, key)
        if key in SET_HERE or key not in flat:  # keys for what tuneforge always does
            continue
        got = flat[key]
        if isinstance(got, list) and isinstance(value, str):
            value = [part.strip() for part in value.split(",")]
        assert got == value, key
    assert cfg.train.do_train is raw.get("do_train", False)  # LLaMA-Factory's default


@pytest.mark.parametrize("name", PREDICT)
def test_a_prediction_example_runs_with_eval_and_train_says_so(
    name, tiny_model_dir, example_data, tmp_path
):
    given = overrides(tiny_model_dir, example_data, tmp_path)
    [problem] = problems_of(lambda: load_config(FIXTURES / name, given))
    assert problem.key == "do_train" and "run it with `tuneforge eval`" in problem.message
    cfg = load_config(FIXTURES / name, [*given, "do_train=false"])  # what `tuneforge eval` reads
    assert cfg.train.do_predict and cfg.data.eval_dataset == ["identity", "alpaca_en_demo"]


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_multimodal_examples_are_refused_one_line_a_key(name, tiny_model_dir, example_data):
    found = problems_of(
        lambda: load_config(FIXTURES / name, overrides(tiny_model_dir, example_data, Path("o")))
    )
    assert_refused(found, REFUSED[name])


@pytest.mark.parametrize("name", EXPORTS)
def test_merge_example_reads(name, tiny_model_dir):
    cfg = read_export_config(FIXTURES / name, [f"model_name_or_path={tiny_model_dir}"])
    raw = written(name)
    assert cfg.args.export_dir == raw["export_dir"]
    assert cfg.args.export_size == raw["export_size"]
    assert cfg.args.max_shard_bytes == raw["export_size"] * 10**9
    assert cfg.args.export_device == raw["export_device"] == "cpu"
    assert cfg.args.export_legacy_format is raw["export_legacy_format"] is False
    assert cfg.run is not None
    assert cfg.run.model.model_name_or_path == str(tiny_model_dir)
    assert cfg.run.model.adapter_name_or_path == raw["adapter_name_or_path"]
    assert cfg.run.model.trust_remote_code is True
    assert cfg.run.data.template == raw["template"]


@pytest.mark.parametrize("name", sorted(EXPORT_REFUSED))
def test_multimodal_merge_example_is_refused(name, tiny_model_dir):
    found = problems_of(
        lambda: read_export_config(FIXTURES / name, [f"model_name_or_path={tiny_model_dir}"])
    )
    assert_refused(found, EXPORT_REFUSED[name])


@pytest.mark.parametrize("name", INFERENCE)
def test_inference_example_reads(name, tiny_model_dir):
    cfg = read_infer_config(FIXTURES / name, [f"model_name_or_path={tiny_model_dir}"])
    raw = written(name)
    assert cfg.args.infer_backend == raw["infer_backend"] == "huggingface"
    check_backend(cfg.args)  # transformers: this machine runs it
    assert cfg.run is not None
    assert cfg.run.model.adapter_name_or_path == raw["adapter_name_or_path"]
    assert cfg.run.finetune.finetuning_type == raw.get("finetuning_type", "lora")
    assert cfg.run.data.template == raw["template"]


def environment_problems(cfg) -> list[Problem]:
    try:
        check_environment(cfg)
    except ConfigError as exc:
        return exc.problems
    return []


def test_deepspeed_line_is_answered_in_one_line_each(tiny_model_dir, example_data, tmp_path):
    name = "extras/badam/llama3_full_sft_ds3.yaml"
    cfg = load_config(FIXTURES / name, overrides(tiny_model_dir, example_data, tmp_path))
    assert cfg.train.deepspeed == written(name)["deepspeed"]
    for problem in environment_problems(cfg):
        assert problem.key == "deepspeed" and "\n" not in problem.message
        assert problem.message.startswith("deepspeed")


def test_deepspeed_example_path_names_a_shipped_file(
    tiny_model_dir, example_data, tmp_path, monkeypatch
):
    monkeypatch.chdir(ROOT)  # LLaMA-Factory's paths are relative to the checkout
    name = "extras/badam/llama3_full_sft_ds3.yaml"
    cfg = load_config(FIXTURES / name, overrides(tiny_model_dir, example_data, tmp_path))
    missing = [p.message for p in environment_problems(cfg) if "no such file" in p.message]
    assert not missing, missing


def test_galore_target_names_the_modules_holding_the_linear_layers(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from tuneforge.training.optimizers import low_rank_arguments

    raw = written("extras/galore/llama3_full_sft.yaml")
    keys = ("finetuning_type", "use_galore", "galore_layerwise", "galore_target", "galore_rank")
    cfg = load_config(
        {"model_name_or_path": str(tiny_model_dir), "dataset": "x"}
        | {key: raw[key] for key in keys}
    )
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    targets = low_rank_arguments(cfg.optimizer, model)["optim_target_modules"]
    assert set(targets) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj"} | {
        "down_proj"
    }


def precision_asked(raw: dict) -> str | None:
    return "bf16" if raw.get("bf16") else "fp16" if raw.get("fp16") else None


def assert_precision_said_once(records, raw: dict) -> None:
    """bf16/fp16 as the example sets them: used where the hardware runs them, else one line
    saying why not (float16 needs CUDA; bf16 without native instructions is ~10x slower)."""
    from tuneforge.models.precision import detect_hardware

    lines = [r.getMessage() for r in records if r.getMessage().startswith("Precision:")]
    assert len(lines) == 1 and "\n" not in lines[0]
    hardware = detect_hardware()
    asked = precision_asked(raw)
    served = {"bf16": hardware.native_bf16, "fp16": hardware.device == "cuda"}
    if asked and not served[asked]:
        assert f"{asked} was set but" in lines[0]


def train_two_steps(cfg_source, caplog, override: list[str] | None = None):
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        result = tuneforge.train(load_config(cfg_source, override or []))
    assert result.completed and result.step == 2
    assert math.isfinite(result.metrics["train_loss"])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TRAINED))
def test_example_trains_two_steps(name, request, example_data, tmp_path, caplog):
    if name in NEEDS:
        pytest.importorskip(NEEDS[name])
    model = request.getfixturevalue("expanded_model" if "llama_pro" in name else "tiny_model_dir")
    result = train_two_steps(
        FIXTURES / name, caplog, overrides(model, example_data, tmp_path / "out")
    )
    assert TRAINED[name] in caplog.text
    raw = written(name)
    assert_precision_said_once(caplog.records, raw)
    if raw.get("use_dft_loss"):  # each token's loss weighted by its probability (~1/vocab)
        assert result.metrics["train_loss"] < 0.1
    if raw["finetuning_type"] in ("lora", "oft"):
        saved = json.loads((result.output_dir / "adapter_config.json").read_text("utf-8"))
        assert saved["peft_type"] == raw["finetuning_type"].upper()
