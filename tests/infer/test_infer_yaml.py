"""`tuneforge chat|api infer.yaml`: LLaMA-Factory's inference YAML names the model, adapter,
template, system prompt and generation settings; flags win over it; an inference engine this
machine cannot run is one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import uvicorn
import yaml

import tuneforge
from tuneforge.cli import main
from tuneforge.config import deploy
from tuneforge.infer import ChatModel
from tuneforge.serving import api

SYSTEM = "You answer in one word."


def inference_yaml(tmp_path: Path, base: Path, adapter: Path, **keys: object) -> str:
    """An inference YAML as LLaMA-Factory's examples/inference ones are written, with the
    generation and system-prompt keys its chat takes."""
    path = tmp_path / "infer.yaml"
    values = {
        "model_name_or_path": str(base),
        "adapter_name_or_path": str(adapter),
        "template": "chatml",
        "finetuning_type": "lora",
        "trust_remote_code": False,
        "infer_backend": "huggingface",
        "infer_dtype": "float32",
        "default_system": SYSTEM,
        "do_sample": True,
        "temperature": 0.5,
        "top_p": 0.8,
        "max_new_tokens": 4,
        **keys,
    }
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return str(path)


@pytest.fixture
def loaded(monkeypatch) -> list:
    """The chat sessions `tuneforge chat` loads, with the model each was loaded for."""
    sessions: list = []
    load = tuneforge.chat

    def spy(model):
        session = load(model)
        sessions.append((model, session))
        return session

    monkeypatch.setattr(tuneforge, "chat", spy)
    return sessions


def errors(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.startswith("tuneforge")]


def test_an_inference_yaml_drives_chat(
    capsys, loaded, tmp_path, tiny_model_dir, tiny_adapter_dir, monkeypatch
):
    config = inference_yaml(tmp_path, tiny_model_dir, tiny_adapter_dir)
    prompts: list[str] = []
    encode = ChatModel.encode

    def recording(self, messages, *args, **kwargs):
        ids = encode(self, messages, *args, **kwargs)
        prompts.append(self.tokenizer.decode(ids))
        return ids

    monkeypatch.setattr(ChatModel, "encode", recording)
    assert main(["--quiet", "chat", config, "--query", "Hi"]) == 0
    reply = capsys.readouterr().out.strip()
    model, session = loaded[0]
    assert (model.base, model.weights, model.adapter) == (
        str(tiny_model_dir),
        str(tiny_model_dir),
        str(tiny_adapter_dir),
    )
    assert model.config.data.template == "chatml" and model.config.model.infer_dtype == "float32"
    gen = model.config.generation
    assert (gen.do_sample, gen.temperature, gen.top_p, gen.max_new_tokens) == (True, 0.5, 0.8, 4)
    assert session.template.name == "chatml" and session.template.default_system == SYSTEM
    turns = [("system", SYSTEM), ("user", "Hi")]
    expected = "".join(f"<|im_start|>{role}\n{text}<|im_end|>\n" for role, text in turns)
    assert prompts == [expected + "<|im_start|>assistant\n"]
    assert reply and len(session.tokenizer(reply)["input_ids"]) <= 4 + 1


def test_flags_win_over_the_inference_yaml(
    capsys, loaded, tmp_path, tiny_model_dir, tiny_adapter_dir, make_lora_adapter
):
    other = make_lora_adapter(tiny_model_dir, tmp_path / "other-lora", seed=1)
    config = inference_yaml(tmp_path, tiny_model_dir, tiny_adapter_dir)
    argv = ["chat", config, "--adapter", str(other), "--temperature", "0"]
    assert main(["--quiet", *argv, "--max-new-tokens", "2", "--query", "Hi", "top_p=0.7"]) == 0
    model, _ = loaded[0]
    assert model.adapter == str(other)
    gen = model.config.generation
    assert (gen.do_sample, gen.max_new_tokens, gen.top_p) == (False, 2, 0.7)


def test_api_resolves_the_model_and_defaults_from_an_inference_yaml(
    monkeypatch, tmp_path, tiny_model_dir, tiny_adapter_dir
):
    given: dict = {}
    fake = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace()))  # loads nothing
    monkeypatch.delenv("TUNEFORGE_API_KEY", raising=False)
    monkeypatch.setattr(api, "load_chat_model", lambda model: given.update(model=model) or fake)
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: given.update(app=app, **kwargs))
    config = inference_yaml(tmp_path, tiny_model_dir, tiny_adapter_dir)
    assert main(["--quiet", "api", config, "--port", "0", "--max-new-tokens", "7"]) == 0
    model = given["model"]
    assert model.adapter == str(tiny_adapter_dir) and model.config.data.template == "chatml"
    assert model.config.data.default_system == SYSTEM
    gen = model.config.generation
    assert (gen.temperature, gen.top_p, gen.max_new_tokens) == (0.5, 0.8, 7)
    assert given["port"] == 0 and given["app"] is not None


needs_no_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is not None, reason="vllm is installed here"
)


@needs_no_vllm
@pytest.mark.parametrize("command", [["chat", "--query", "hi"], ["api", "--port", "0"]])
def test_infer_backend_vllm_without_vllm_is_one_line(
    capsys, loaded, tmp_path, tiny_model_dir, tiny_adapter_dir, command
):
    config = inference_yaml(
        tmp_path, tiny_model_dir, tiny_adapter_dir, infer_backend="vllm", vllm_maxlen=2048
    )
    assert main([command[0], config, *command[1:]]) == 2
    assert errors(capsys) == [
        f"tuneforge: error: {config}: infer_backend=vllm: vllm is not installed here (and it "
        f"needs a CUDA GPU); use infer_backend: huggingface"
    ]
    assert not loaded


def test_an_installed_engine_without_cuda_is_one_line(capsys, monkeypatch, tiny_adapter_dir):
    import torch

    monkeypatch.setattr(deploy, "missing_extra", lambda *args: None)  # as if sglang were there
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    argv = ["chat", "--adapter", str(tiny_adapter_dir), "infer_backend=sglang", "--query", "hi"]
    assert main(argv) == 2
    assert errors(capsys) == [
        "tuneforge: error: config: infer_backend=sglang: sglang needs a CUDA GPU and this "
        "machine has none; use infer_backend: huggingface"
    ]


def test_bad_inference_keys_get_one_line_each(capsys, tmp_path, tiny_model_dir, tiny_adapter_dir):
    config = inference_yaml(
        tmp_path,
        tiny_model_dir,
        tiny_adapter_dir,
        infer_backend="ktransformers",
        vllm_gpu_util=1.5,
        temprature=0.3,
        export_dir="out",
        export_size=2,
    )
    assert main(["chat", config, "--query", "hi"]) == 2
    said = [line.removeprefix(f"tuneforge: error: {config}: ") for line in errors(capsys)]
    assert sorted(said) == sorted(
        [
            "infer_backend='ktransformers': allowed: huggingface, vllm or sglang",
            "vllm_gpu_util=1.5: Input should be less than or equal to 1",
            "unknown key 'temprature'; did you mean 'temperature'?",
            "export_dir, export_size are keys of export YAMLs: use the file with "
            "`tuneforge export`",
        ]
    )

    config = inference_yaml(tmp_path, tiny_model_dir, tiny_adapter_dir, vllm_maxlen=4096)
    assert main(["chat", config, "--query", "hi"]) == 2
    assert errors(capsys) == [
        f"tuneforge: error: {config}: vllm_maxlen applies to infer_backend: vllm (it is "
        f"huggingface); remove the key"
    ]
