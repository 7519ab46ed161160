"""ChatModel, the one generation path: batching, streaming, settings and what it loads."""

from __future__ import annotations

import json

import pytest

import tuneforge
from tuneforge.config import GenerationArgs, load_config
from tuneforge.errors import ConfigError, ModelError
from tuneforge.infer import Row, chat_config, generation_settings

QUESTIONS = ["Hi", "What is the capital of France? Please answer in one long sentence."]


@pytest.fixture(scope="module")
def chat(tiny_adapter_dir):
    return tuneforge.chat(tiny_adapter_dir)


def test_a_batch_generates_what_each_prompt_generates_alone(chat):
    greedy = GenerationArgs(max_new_tokens=12)
    prompts = [chat.encode([{"role": "user", "content": q}]) for q in QUESTIONS]
    assert len(prompts[0]) != len(prompts[1])  # so the batch needs left padding
    alone = []
    for prompt in prompts:
        row = Row(prompt, 12)
        chat.generate([row], greedy)
        alone.append(row.token_ids)
    together = [Row(prompt, limit) for prompt, limit in zip(prompts, (12, 5), strict=True)]
    chat.generate(together, greedy)
    assert together[0].token_ids == alone[0]
    assert together[1].token_ids == alone[1][:5] and together[1].finish_reason == "length"


def test_the_stream_adds_up_to_the_reply(chat):
    messages = [{"role": "user", "content": QUESTIONS[1]}]
    gen = GenerationArgs(max_new_tokens=10)
    pieces = list(chat.stream(messages, gen))
    assert len(pieces) > 1
    assert "".join(pieces).strip() == chat.reply(messages, gen)


def test_closing_the_stream_early_ends_generation(chat, monkeypatch):
    messages = [{"role": "user", "content": "Hi"}]
    row = Row(chat.encode(messages), 40)
    chat.generate([row], GenerationArgs(max_new_tokens=40))
    assert row.finish_reason == "length"  # left alone, this model writes to the limit

    generated = []
    generate = chat.model.generate

    def counting(*args, **kwargs):
        output = generate(*args, **kwargs)
        generated.append(output.shape[-1] - kwargs["input_ids"].shape[-1])
        return output

    monkeypatch.setattr(chat.model, "generate", counting)
    stream = chat.stream(messages, GenerationArgs(max_new_tokens=500))
    next(stream)
    stream.close()  # joins the worker: returns only once generation has stopped
    assert chat._lock.acquire(blocking=False)
    chat._lock.release()
    assert len(generated) == 1 and generated[0] < 20, generated  # of 500 allowed


def test_generation_settings_map_cli_and_api_values():
    base = GenerationArgs(do_sample=False, temperature=0.7, top_p=0.9)
    assert generation_settings(base) is base
    sampled = generation_settings(
        base, temperature=0.3, top_p=0.5, max_new_tokens=9, repetition_penalty=1.2
    )
    assert (sampled.do_sample, sampled.temperature, sampled.top_p) == (True, 0.3, 0.5)
    assert (sampled.max_new_tokens, sampled.repetition_penalty) == (9, 1.2)
    assert generation_settings(sampled, temperature=0).do_sample is False
    with pytest.raises(ConfigError, match="temperature=-1"):
        generation_settings(base, temperature=-1)
    with pytest.raises(ConfigError, match="top_p=1.5"):
        generation_settings(base, top_p=1.5)


def test_chat_config_reads_what_each_kind_of_folder_is(tiny_adapter_dir, tiny_model_dir, tmp_path):
    plain_peft = chat_config(str(tiny_adapter_dir))  # no tuneforge config: base from peft's file
    assert plain_peft.model.adapter_name_or_path == str(tiny_adapter_dir)
    base = json.loads((tiny_adapter_dir / "adapter_config.json").read_text())
    assert plain_peft.model.model_name_or_path == base["base_model_name_or_path"]

    whole = chat_config(str(tiny_model_dir))
    assert (whole.model.model_name_or_path, whole.model.adapter_name_or_path) == (
        str(tiny_model_dir),
        None,
    )

    given = load_config({"do_train": False, "template": "chatml"})
    combined = chat_config(str(tiny_adapter_dir), given)
    assert combined.data.template == "chatml"
    assert combined.model.adapter_name_or_path == str(tiny_adapter_dir)

    with pytest.raises(ModelError, match="no such folder"):
        chat_config(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="no adapter_config.json"):
        chat_config(str(tmp_path))


@pytest.mark.slow
def test_the_default_model_answers_alone_and_in_a_batch():
    chat = tuneforge.chat()
    question = [{"role": "user", "content": "What is the capital of France?"}]
    assert "Paris" in chat.reply(question, GenerationArgs(max_new_tokens=20))
    rows = [
        Row(chat.encode(question), 20),
        Row(chat.encode([{"role": "user", "content": "Name a primary colour."}]), 20),
    ]
    chat.generate(rows, GenerationArgs())
    assert "Paris" in rows[0].text and rows[0].finish_reason == "stop"


def test_the_chat_command_keeps_a_conversation_until_exit(tiny_adapter_dir, monkeypatch, capsys):
    from tuneforge.cli import main

    typed = iter(["Hello there", "", "/clear", "And now?", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    code = main(
        [
            "--quiet",
            "chat",
            "--adapter",
            str(tiny_adapter_dir),
            "--max-new-tokens",
            "3",
            "--temperature",
            "0",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and out.count("Assistant: ") == 2 and "(conversation cleared)" in out
    assert next(typed, None) is None  # every line was read, the last one ended the chat


def test_an_interrupted_run_is_loaded_from_its_last_complete_checkpoint(
    tiny_adapter_dir, tiny_model_dir, tmp_path, caplog
):
    import shutil

    from tuneforge.config.load import save_config
    from tuneforge.layout import CONFIG_NAME, MARKER

    run = tmp_path / "run"
    run.mkdir()
    save_config(
        load_config({"model_name_or_path": str(tiny_model_dir), "do_train": False}),
        run / CONFIG_NAME,
    )
    with pytest.raises(ModelError, match="has not finished and has no complete checkpoint"):
        chat_config(str(run))
    for step in (2, 4):
        shutil.copytree(tiny_adapter_dir, run / f"checkpoint-{step}")
    (run / "checkpoint-2" / MARKER).write_text('{"step": 2}')  # checkpoint-4 is incomplete
    cfg = chat_config(str(run))
    assert cfg.model.adapter_name_or_path == str(run / "checkpoint-2")
    assert cfg.model.model_name_or_path == str(tiny_model_dir)
    assert (
        "has not finished (no final model): using its last complete checkpoint, "
        "checkpoint-2" in caplog.text
    )
