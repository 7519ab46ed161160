"""The forgetting check: did fine-tuning cost the model the general ability it had?

The base and the tuned model take the same small probe, shipped with tuneforge (written for
it): perplexity on everyday English and Chinese text, and short questions with known answers,
asked through the one generation path (`ChatModel`, the template training used) and scored
by matching the answer. The share kept is tuned/base for answers and base/tuned for
perplexity (lower is better), so 100% means nothing was lost; below 90% is a warning.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from tuneforge.config.schema import GenerationArgs, RunConfig
from tuneforge.errors import ConfigError
from tuneforge.infer.chat import ChatModel, load_chat_model
from tuneforge.infer.decoding import Row
from tuneforge.infer.resolve import ResolvedModel
from tuneforge.layout import EVAL_DIR
from tuneforge.monitor.runlog import FORGETTING_NAME

logger = logging.getLogger(__name__)

KEEP_WARNING = 0.9
ANSWER_TOKENS = 48
BATCH = 8  # texts per perplexity forward
# Questions per generation batch: a decoding step reads every weight once whatever the batch,
# so on a CPU (memory-bound, ~200 ms a step for the default model) one batch of 32 answers
# costs little more than one of 8.
ANSWER_BATCH = 32


@dataclass(frozen=True)
class Question:
    lang: str
    question: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class Probe:
    texts: dict[str, list[str]]  # language -> texts
    questions: list[Question]


@dataclass
class ForgettingResult:
    base: dict[str, float]
    tuned: dict[str, float]
    kept: dict[str, float | None]
    warnings: list[str] = field(default_factory=list)
    answers: list[dict[str, Any]] = field(default_factory=list)  # each question's two replies
    path: Path | None = None

    def table(self) -> str:
        lines = [f"{'forgetting check':<22} {'base':>10} {'tuned':>10} {'kept':>8}"]
        for key, kept in self.kept.items():
            share = "n/a" if kept is None else f"{kept:.1%}"
            lines.append(f"{key:<22} {self.base[key]:>10.4g} {self.tuned[key]:>10.4g} {share:>8}")
        return "\n".join(lines)


def load_probe() -> Probe:
    """The general-text and question sets shipped in ``tuneforge/monitor/data``."""
    folder = resources.files("tuneforge.monitor") / "data"
    texts: dict[str, list[str]] = {}
    for row in _jsonl(folder / "general_text.jsonl"):
        texts.setdefault(row["lang"], []).append(row["text"])
    questions = [
        Question(row["lang"], row["question"], tuple(row["answers"]))
        for row in _jsonl(folder / "general_questions.jsonl")
    ]
    return Probe(texts, questions)


def check_forgetting(
    tuned: ResolvedModel,
    base: ResolvedModel,
    output_dir: str | Path | None = None,
    probe: Probe | None = None,
) -> ForgettingResult:
    """Score the base model, then the tuned one (one in memory at a time); write the result to
    ``<output_dir>/forgetting.json`` when a folder is given."""
    if tuned.config.finetune.stage == "cls":
        raise ConfigError(
            "the forgetting check measures a language model's general text and "
            "answers; a stage cls model (a classifier) has neither"
        )
    probe = probe or load_probe()
    scores, replies = {}, {}
    for label, model in (("base", base), ("tuned", tuned)):
        chat = load_chat_model(model)
        scores[label], replies[label] = score(chat, probe, label)
        del chat
        gc.collect()
    kept = kept_shares(scores["base"], scores["tuned"])
    result = ForgettingResult(
        scores["base"],
        scores["tuned"],
        kept,
        warnings=[
            f"{key}: the tuned model kept {share:.0%} of the base model's score (base "
            f"{scores['base'][key]:.4g}, tuned {scores['tuned'][key]:.4g}); fine-tuning may have "
            f"cost general ability: try a lower learning_rate, fewer epochs, a smaller lora_rank, "
            f"or mix general data into the training set"
            for key, share in kept.items()
            if share is not None and share < KEEP_WARNING
        ],
        answers=[
            {"question": q.question, "accepted": list(q.answers), "base": before, "tuned": after}
            for q, before, after in zip(
                probe.questions, replies["base"], replies["tuned"], strict=True
            )
        ],
    )
    for warning in result.warnings:
        logger.warning("%s", warning)
    if output_dir is not None:
        result.path = Path(output_dir) / FORGETTING_NAME
        result.path.parent.mkdir(parents=True, exist_ok=True)
        payload = {k: v for k, v in asdict(result).items() if k != "path"}
        result.path.write_text(
            json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    return result


def score(chat: ChatModel, probe: Probe, label: str) -> tuple[dict[str, float], list[str]]:
    """``perplexity_<lang>`` for each language of the probe and ``answers_correct`` (the share
    answered right), with the replies to the questions."""
    out = {
        f"perplexity_{lang}": perplexity(chat, texts, f"perplexity {lang} ({label})")
        for lang, texts in probe.texts.items()
    }
    replies = answer_questions(chat, probe.questions, label)
    right = sum(
        is_correct(reply, q.answers) for reply, q in zip(replies, probe.questions, strict=True)
    )
    out["answers_correct"] = right / len(replies) if replies else math.nan
    return out, replies


def perplexity(chat: ChatModel, texts: Sequence[str], desc: str = "perplexity") -> float:
    """exp(mean negative log-likelihood per predicted token) over all `texts`, scored BATCH
    texts at a time (right-padded; padding predicts nothing)."""
    total, count = 0.0, 0
    tokenizer, device = chat.tokenizer, chat.model.device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [ids for ids in tokenizer(list(texts)).input_ids if len(ids) >= 2]
    with torch.inference_mode(), tqdm(total=len(texts), desc=desc, unit="text") as bar:
        bar.update(len(texts) - len(encoded))
        for start in range(0, len(encoded), BATCH):
            rows = encoded[start : start + BATCH]
            width = max(map(len, rows))
            ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
            labels = ids.masked_fill(mask.to(device) == 0, -100)
            logits = chat.model(input_ids=ids, attention_mask=mask.to(device)).logits
            total += float(
                torch.nn.functional.cross_entropy(
                    logits[:, :-1].flatten(0, 1).float(),
                    labels[:, 1:].flatten(),
                    ignore_index=-100,
                    reduction="sum",
                )
            )
            count += sum(len(r) - 1 for r in rows)
            bar.update(len(rows))
    return math.exp(total / count) if count else math.nan


def answer_questions(chat: ChatModel, questions: Sequence[Question], label: str) -> list[str]:
    """Each question's reply, by greedy decoding through the chat template, in batches."""
    gen = GenerationArgs(do_sample=False, max_new_tokens=ANSWER_TOKENS)
    replies: list[str] = []
    with tqdm(
        total=len(questions), desc=f"questions ({label})", unit="question", dynamic_ncols=True
    ) as bar:
        for start in range(0, len(questions), ANSWER_BATCH):
            rows = [
                Row(chat.encode([{"role": "user", "content": q.question}]), ANSWER_TOKENS)
                for q in questions[start : start + ANSWER_BATCH]
            ]
            chat.generate(rows, gen)
            replies += [row.text.strip() for row in rows]
            bar.update(len(rows))
    return replies


def is_correct(reply: str, answers: Sequence[str]) -> bool:
    """An accepted answer appears in the reply: as a whole word for Latin script (so "7" is
    not found in "17"), as a substring for Chinese."""
    text = reply.casefold()
    for answer in answers:
        wanted = answer.casefold()
        if wanted.isascii():
            if re.search(rf"(?<![a-z0-9]){re.escape(wanted)}(?![a-z0-9])", text):
                return True
        elif wanted in text:
            return True
    return False


def kept_shares(base: dict[str, float], tuned: dict[str, float]) -> dict[str, float | None]:
    """tuned/base for scores, base/tuned for perplexities; None where the base scored 0."""
    kept: dict[str, float | None] = {}
    for key, before in base.items():
        after = tuned[key]
        if key.startswith("perplexity"):
            kept[key] = before / after if after > 0 else None
        else:
            kept[key] = after / before if before > 0 else None
    return kept


def _jsonl(path: Any) -> list[dict[str, Any]]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def check_adapter(
    cfg: RunConfig, adapter: str | None, output_dir: str | Path | None = None
) -> ForgettingResult:
    """``tuneforge eval --forgetting``: the adapter's model against the model it started from,
    paired as ``tuneforge eval`` pairs them; the result goes beside the evaluation's."""
    if not adapter:
        raise ConfigError(
            "--forgetting compares a fine-tuned model with the model it started "
            "from: give --adapter <training output folder>"
        )
    from tuneforge.eval.evaluate import compared_models

    tuned = compared_models(cfg, adapter)[0]
    return check_forgetting(tuned, tuned.base_model(), output_dir or Path(adapter) / EVAL_DIR)
