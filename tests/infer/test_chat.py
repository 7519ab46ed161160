"""ChatModel, the one generation path: batching, streaming and settings (what it loads:
test_resolve.py)."""

from __future__ import annotations

import pytest

import tuneforge
from tuneforge.config import GenerationArgs
from tuneforge.errors import ConfigError
from tuneforge.infer import Row, generation_settings

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


CALC_TOOL = {
    "name": "calculate",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
}


def test_tools_reach_the_prompt_and_a_named_tool_choice_starts_the_call(chat):
    messages = [{"role": "user", "content": "2 + 2?"}]
    with_tools = chat.tokenizer.decode(chat.encode(messages, [CALC_TOOL]))
    assert '"name": "calculate"' in with_tools and "calculate" not in chat.tokenizer.decode(
        chat.encode(messages)
    )
    assert chat.tool_prefill("auto") == chat.tool_prefill("none") == ""
    reply = chat.reply(messages, GenerationArgs(max_new_tokens=3), [CALC_TOOL], "calculate")
    assert reply.startswith('<tool_call>\n{"name": "calculate", "arguments":')
    # The random tiny model does not finish the JSON: read as a failed call, never a call.
    parsed = chat.read_reply(reply)
    assert parsed.calls == () and parsed.error
