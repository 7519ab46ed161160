"""Answers for a whole test set through the one generation path, batched, on disk as they come.

Prompts are rendered by the chat template the model was trained with (`ChatModel`), batched
with left padding and the KV cache by `ChatModel.generate`, longest first so that a batch too
big for memory fails in the first minute rather than the last. Each batch's answers are
appended to the predictions file as soon as they exist: an interrupted run keeps them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from tuneforge.config.schema import GenerationArgs
from tuneforge.data.formats import Message
from tuneforge.data.tools import ParsedReply
from tuneforge.infer.chat import ChatModel, load_chat_model
from tuneforge.infer.decoding import Row
from tuneforge.infer.resolve import ResolvedModel

logger = logging.getLogger(__name__)

PREDICTIONS_NAME = "generated_predictions.jsonl"


@dataclass(frozen=True)
class EvalSample:
    """A conversation up to its last user turn, and the answer it should get (if known)."""

    messages: list[Message]
    reference: str | None
    tools: list[dict[str, Any]] | None = None

    @property
    def question(self) -> str:
        return self.messages[-1]["content"]


def eval_samples(rows: Any) -> list[EvalSample]:
    """Conversations (``messages``, ``tools`` columns) -> prompts and reference answers."""
    samples = []
    for messages, tools in zip(rows["messages"], rows["tools"], strict=True):
        answered = messages[-1]["role"] == "assistant"
        samples.append(
            EvalSample(
                messages=list(messages[:-1] if answered else messages),
                reference=messages[-1]["content"] if answered else None,
                tools=json.loads(tools) if tools else None,
            )
        )
    return samples


def generate_predictions(
    chat: ChatModel,
    samples: Sequence[EvalSample],
    gen: GenerationArgs,
    batch_size: int,
    path: Path,
    label: str,
) -> list[str]:
    """Answer every sample; write ``{index, prompt, reference, prediction}`` lines to `path`."""
    prompts = [chat.template.encode_prompt(s.messages, tools=s.tools) for s in samples]
    order = sorted(range(len(samples)), key=lambda i: -len(prompts[i]))
    predictions = [""] * len(samples)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        path.open("w", encoding="utf-8") as out,
        tqdm(
            total=len(samples), desc=f"generate ({label})", unit="sample", dynamic_ncols=True
        ) as bar,
    ):
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            rows = [Row(prompts[i], gen.max_new_tokens) for i in batch]
            chat.generate(rows, gen)
            for index, row in zip(batch, rows, strict=True):
                predictions[index] = row.text.strip()
                line = {
                    "index": index,
                    "prompt": chat.tokenizer.decode(prompts[index]),
                    "reference": samples[index].reference,
                    "prediction": predictions[index],
                }
                out.write(json.dumps(line, ensure_ascii=False) + "\n")
            out.flush()
            bar.update(len(batch))
    logger.info("%s predictions written to %s", label, path)
    return predictions


@dataclass(frozen=True)
class Answers:
    """Each model's answers (``tuned`` and ``base``, or ``model`` alone), read back as text
    and tool calls by its own template, and the predictions files written."""

    texts: dict[str, list[str]]
    replies: dict[str, list[ParsedReply]]
    tool_format: str
    files: list[Path]


def answer_with_each(
    tuned: ResolvedModel,
    base: ResolvedModel | None,
    samples: Sequence[EvalSample],
    gen: GenerationArgs,
    batch_size: int,
    out: Path,
) -> Answers:
    """Answer `samples` with the tuned model, then with the base (one loaded at a time);
    ``generated_predictions.jsonl`` and, for the base, ``generated_predictions_base.jsonl``."""
    texts: dict[str, list[str]] = {}
    replies: dict[str, list[ParsedReply]] = {}
    files: list[Path] = []
    tool_format = ""
    models = {"tuned": tuned, "base": base} if base is not None else {"model": tuned}
    for label, model in models.items():
        chat = load_chat_model(model)
        files.append(
            out / PREDICTIONS_NAME.replace(".jsonl", "_base.jsonl" if label == "base" else ".jsonl")
        )
        texts[label] = generate_predictions(chat, samples, gen, batch_size, files[-1], label)
        replies[label] = [chat.read_reply(text) for text in texts[label]]
        tool_format = tool_format or chat.template.tool_format.name
        del chat  # the next model loads without this one in memory
    return Answers(texts, replies, tool_format, files)
