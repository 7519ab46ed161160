"""Batched generation: same answers as one at a time, written line by line."""

from __future__ import annotations

import json

import tuneforge
from tuneforge.eval.generate import EvalSample, eval_samples, generate_predictions

QUESTIONS = ["Hi", "What is the capital of France, and why is it that city?", "你好吗？"]


def test_batched_left_padded_answers_equal_one_at_a_time(tiny_model_dir, tmp_path):
    cfg = tuneforge.load_config(
        {
            "model_name_or_path": str(tiny_model_dir),
            "do_train": False,
            "max_new_tokens": 8,
            "infer_dtype": "float32",
        }
    )
    chat = tuneforge.chat(cfg)
    samples = [
        EvalSample([{"role": "user", "content": q}], f"ref {i}") for i, q in enumerate(QUESTIONS)
    ]
    path = tmp_path / "predictions.jsonl"
    predictions = generate_predictions(chat, samples, cfg.generation, 2, path, "model")
    assert predictions == [chat.reply(s.messages, cfg.generation) for s in samples]
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert [line["index"] for line in lines] == [1, 2, 0]  # longest prompt first
    assert all(line["reference"] == f"ref {line['index']}" for line in lines)
    assert all(line["prediction"] == predictions[line["index"]] for line in lines)
    assert lines[0]["prompt"].endswith(f"{QUESTIONS[1]}<|im_end|>\n<|im_start|>assistant\n")


def test_conversations_split_into_prompt_and_reference():
    rows = {
        "messages": [
            [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}],
            [{"role": "user", "content": "open"}],
        ],
        "tools": [None, json.dumps([{"name": "f"}])],
    }
    first, second = eval_samples(rows)
    assert (first.messages, first.reference) == ([{"role": "user", "content": "Q"}], "A")
    assert (second.question, second.reference, second.tools) == ("open", None, [{"name": "f"}])
