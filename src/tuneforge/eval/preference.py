"""`tuneforge eval` for the preference stages: on held-out pairs, does the tuned model
prefer what people preferred, more than the model it started from?

For dpo and kto runs both models rate each answer by its log-probability (per token, so
length alone does not decide; the summed form is reported too), and the tuned model's
implicit reward, beta x (its log-probability - the base's), is what DPO trains to order the
pairs. Both then answer a few held-out prompts, side by side; with ``--reward-model`` a
trained reward model scores those answers (the tuned model's win rate). A reward model
(stage rm) is scored directly: chosen above rejected, and by what margin.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from tuneforge.config.load import replace
from tuneforge.config.schema import RunConfig
from tuneforge.data import Template, files, formats, get_template
from tuneforge.data.encode_pairs import encode_answers, encode_preferences
from tuneforge.data.prepare import read_test_rows
from tuneforge.data.registry import DatasetSpec
from tuneforge.errors import ConfigError, DataError
from tuneforge.eval.generate import EvalSample, generate_predictions
from tuneforge.eval.report import side_by_side
from tuneforge.infer.chat import load_chat_model
from tuneforge.infer.resolve import ResolvedModel, resolve_model
from tuneforge.models import (
    REWARD_LABEL,
    inference_dtype,
    load_adapter,
    load_model,
    load_tokenizer,
)

logger = logging.getLogger(__name__)

ANSWERED_PROMPTS = 20  # held-out prompts both models answer (and a reward model scores)
SHOWN = 3
PREDICTIONS_NAME = "preference_answers.jsonl"
WORDS = re.compile(r"[\u4e00-\u9fff]|[^\s\u4e00-\u9fff]+")


@dataclass(frozen=True)
class Pairs:
    """Held-out pairs: the prompts as conversations, and their ids (prompt, chosen,
    rejected) rendered with the run's template."""

    samples: list[EvalSample]
    prompt_ids: list[list[int]]
    chosen_ids: list[list[int]]
    rejected_ids: list[list[int]]


def evaluate_preference(
    tuned: ResolvedModel, base: ResolvedModel | None, out: Path, reward_model: str | None = None
) -> tuple[dict[str, Any], str, list[Path]]:
    """The metrics, a printable report and the files written."""
    cfg = tuned.config
    if cfg.finetune.stage == "rm":
        scorer = RewardScorer.load(tuned)
        pairs = read_pairs(cfg, _template(cfg, scorer.tokenizer))
        scores = pair_scores(scorer, pairs, cfg.train.per_device_eval_batch_size)
        lines = [f"{k:<18} {v:.4f}" for k, v in scores.items()]
        text = f"{len(pairs.samples)} held-out pairs, reward model\n" + "\n".join(lines)
        return {"pairs": len(pairs.samples), "model": scores}, text, []
    batch = cfg.train.per_device_eval_batch_size
    chat = load_chat_model(tuned)
    pairs = read_pairs(cfg, chat.template)
    own = "tuned" if base else "model"
    rated = {own: rate_pairs(chat.model, pairs, batch)}
    prompts = pairs.samples[:ANSWERED_PROMPTS]
    gen = cfg.generation
    written = [out / PREDICTIONS_NAME]
    answers = {own: generate_predictions(chat, prompts, gen, batch, written[0], own)}
    del chat
    if base is not None:
        chat = load_chat_model(base)
        rated["base"] = rate_pairs(chat.model, pairs, batch)
        written.append(out / PREDICTIONS_NAME.replace(".jsonl", "_base.jsonl"))
        answers["base"] = generate_predictions(chat, prompts, gen, batch, written[1], "base")
        del chat
    metrics = {name: rating.metrics() for name, rating in rated.items()}
    for name, texts in answers.items():
        metrics[name]["answer_words"] = float(np.mean([_length(t) for t in texts]))
    result: dict[str, Any] = {"pairs": len(pairs.samples), **metrics}
    parts = [f"{len(pairs.samples)} held-out pairs"]
    if base is None:
        parts.append("\n".join(f"{k:<24} {v:.4f}" for k, v in metrics["model"].items()))
    else:
        reward = implicit_reward(rated["tuned"], rated["base"], cfg.finetune.pref_beta)
        result["implicit_reward"] = reward
        parts.append(side_by_side("base", metrics["base"], "tuned", metrics["tuned"]))
        parts.append(
            f"implicit reward (beta {cfg.finetune.pref_beta}): chosen above rejected in "
            f"{reward['accuracy']:.1%} of pairs, mean margin {reward['margin']:.4f}"
        )
        if reward_model:
            result["win_rate"] = win_rate(reward_model, prompts, answers, cfg)
            parts.append(
                f"reward model {reward_model}: the tuned answer scores higher in "
                f"{result['win_rate']:.1%} of {len(prompts)} prompts"
            )
        parts.append(_shown(prompts, answers["base"], answers["tuned"]))
    return result, "\n\n".join(parts), written


def read_pairs(cfg: RunConfig, template: Template) -> Pairs:
    """The test pairs: ``eval_dataset``, or the validation split training held out."""
    rows = read_test_rows(replace(cfg, stage="rm" if cfg.finetune.stage == "rm" else "dpo"))
    encoded, _ = encode_preferences(
        rows,
        template,
        cutoff_len=cfg.data.cutoff_len,
        num_proc=None,
        load_from_cache_file=not cfg.data.overwrite_cache,
    )
    samples = [
        EvalSample(list(messages), chosen)
        for messages, chosen in zip(rows["messages"], rows["chosen"], strict=True)
    ]
    return Pairs(samples, encoded["prompt_ids"], encoded["chosen_ids"], encoded["rejected_ids"])


def _template(cfg: RunConfig, tokenizer: Any) -> Template:
    return get_template(cfg.data.template, tokenizer, cfg.data.default_system, cfg.data.tool_format)


@dataclass(frozen=True)
class Rating:
    """Each answer's summed log-probability and token count, chosen and rejected."""

    chosen: np.ndarray
    rejected: np.ndarray
    chosen_tokens: np.ndarray
    rejected_tokens: np.ndarray

    def metrics(self) -> dict[str, float]:
        per_token_c = self.chosen / self.chosen_tokens
        per_token_r = self.rejected / self.rejected_tokens
        return {
            "accuracy": float(np.mean(per_token_c > per_token_r)),
            "accuracy_summed": float(np.mean(self.chosen > self.rejected)),
            "margin_per_token": float(np.mean(per_token_c - per_token_r)),
        }


def implicit_reward(tuned: Rating, base: Rating, beta: float) -> dict[str, float]:
    """DPO's reward of each answer, beta x (log p_tuned - log p_base), and how it orders them."""
    margin = beta * ((tuned.chosen - base.chosen) - (tuned.rejected - base.rejected))
    return {"accuracy": float(np.mean(margin > 0)), "margin": float(np.mean(margin))}


def rate_pairs(model: Any, pairs: Pairs, batch_size: int) -> Rating:
    """Summed log-probabilities of every chosen and rejected answer after its prompt."""
    sums: dict[str, list[float]] = {"chosen": [], "rejected": []}
    counts: dict[str, list[int]] = {"chosen": [], "rejected": []}
    with tqdm(total=2 * len(pairs.samples), desc="rate pairs", unit="answer") as bar:
        for name, answers in (("chosen", pairs.chosen_ids), ("rejected", pairs.rejected_ids)):
            for start in range(0, len(answers), batch_size):
                prompts = pairs.prompt_ids[start : start + batch_size]
                batch = answers[start : start + batch_size]
                sums[name] += answer_logps(model, prompts, batch)
                counts[name] += [len(ids) for ids in batch]
                bar.update(len(batch))
    return Rating(
        np.array(sums["chosen"]),
        np.array(sums["rejected"]),
        np.array(counts["chosen"]),
        np.array(counts["rejected"]),
    )


def answer_logps(
    model: Any, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]
) -> list[float]:
    """log p(answer | prompt), summed over the answer's tokens, for a batch (right-padded)."""
    sequences = [list(p) + list(a) for p, a in zip(prompts, answers, strict=True)]
    width = max(map(len, sequences))
    ids = torch.zeros((len(sequences), width), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence)
        mask[row, : len(sequence)] = 1
    with torch.inference_mode():
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device)).logits
        logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)
        taken = logps.gather(-1, ids[:, 1:].to(logps.device).unsqueeze(-1)).squeeze(-1)
    out = []
    for row, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
        start = len(prompt) - 1  # position predicting the answer's first token
        out.append(float(taken[row, start : start + len(answer)].sum()))
    return out


@dataclass
class RewardScorer:
    """A trained reward model (stage rm) scoring whole sequences."""

    model: Any
    tokenizer: Any

    @classmethod
    def load(cls, resolved: ResolvedModel) -> RewardScorer:
        args = resolved.load_args()
        tokenizer = load_tokenizer(args)
        weights = load_model(
            args,
            dtype=inference_dtype(args),
            for_training=False,
            labels=(REWARD_LABEL,),
            pad_token_id=tokenizer.pad_token_id,
        )
        net = (
            load_adapter(weights, resolved.adapter, trainable=False)
            if resolved.adapter
            else weights
        )
        return cls(net.eval(), tokenizer)

    def scores(self, sequences: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
        out: list[float] = []
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            for start in range(0, len(sequences), batch_size):
                batch = sequences[start : start + batch_size]
                width = max(map(len, batch))
                ids = torch.tensor([list(s) + [pad] * (width - len(s)) for s in batch])
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in batch])
                logits = self.model(
                    input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device)
                ).logits
                out += logits[:, 0].float().cpu().tolist()
        return np.array(out)


def pair_scores(scorer: RewardScorer, pairs: Pairs, batch_size: int) -> dict[str, float]:
    """Pairwise accuracy (chosen scored above rejected) and the mean margin."""
    chosen = scorer.scores(
        [p + c for p, c in zip(pairs.prompt_ids, pairs.chosen_ids, strict=True)], batch_size
    )
    rejected = scorer.scores(
        [p + r for p, r in zip(pairs.prompt_ids, pairs.rejected_ids, strict=True)], batch_size
    )
    return {
        "accuracy": float(np.mean(chosen > rejected)),
        "margin": float(np.mean(chosen - rejected)),
        "chosen_reward": float(np.mean(chosen)),
        "rejected_reward": float(np.mean(rejected)),
    }


def win_rate(
    reward_model: str,
    prompts: Sequence[EvalSample],
    answers: dict[str, list[str]],
    cfg: RunConfig,
) -> float:
    """Share of prompts where a trained reward model scores the tuned answer above the base's
    (ties count half)."""
    resolved = resolve_model(reward_model)
    if resolved.config.finetune.stage != "rm":
        raise ConfigError(
            f"--reward-model {reward_model}: was trained with stage "
            f"{resolved.config.finetune.stage}; give the output folder of a stage rm run"
        )
    scorer = RewardScorer.load(resolved)
    template = _template(resolved.config, scorer.tokenizer)
    batch = cfg.train.per_device_eval_batch_size
    scored = {}
    for name in ("base", "tuned"):
        sequences = []
        for sample, answer in zip(prompts, answers[name], strict=True):
            prompt, (ids,), _ = encode_answers(
                template, sample.messages, [answer or " "], None, cutoff_len=cfg.data.cutoff_len
            )
            sequences.append(prompt + ids)
        scored[name] = scorer.scores(sequences, batch)
    wins = (scored["tuned"] > scored["base"]) + 0.5 * (scored["tuned"] == scored["base"])
    return float(np.mean(wins))


def _length(text: str) -> int:
    """Words, counting each CJK character as one (Chinese has no spaces)."""
    return len(WORDS.findall(text))


def _shown(prompts: Sequence[EvalSample], base: Sequence[str], tuned: Sequence[str]) -> str:
    blocks = []
    for sample, before, after in list(zip(prompts, base, tuned, strict=True))[:SHOWN]:
        blocks.append(f"Q: {sample.question}\n  base:  {before}\n  tuned: {after}")
    return "Answers, base vs tuned:\n" + "\n\n".join(blocks)


def score_answers(model: ResolvedModel, input_path: Path, output_path: Path) -> Path:
    """Score every answered conversation of a file (alpaca, sharegpt or openai rows; the
    last message is the answer) with a reward model; write each row with its ``reward``."""
    if not input_path.is_file():
        raise DataError(f"{input_path}: no such file")
    where = str(input_path)
    rows = files.load_file(files.data_files(input_path)[0], model.config.model.cache_dir)
    fmt = formats.resolve_format(DatasetSpec(name=input_path.name), where, rows, "sft")
    conversations = formats.to_conversations(
        rows, where, fmt, num_proc=None, load_from_cache_file=False
    )
    scorer = RewardScorer.load(model)
    template = _template(model.config, scorer.tokenizer)
    cutoff = model.config.data.cutoff_len
    sequences = []
    for messages, tools in zip(conversations["messages"], conversations["tools"], strict=True):
        *prompt, answer = messages
        ids, (answer_ids,), _ = encode_answers(
            template, prompt, [answer["content"]], tools, cutoff_len=cutoff
        )
        sequences.append(ids + answer_ids)
    rewards = scorer.scores(sequences, model.config.train.per_device_eval_batch_size)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    with output_path.open("w", encoding="utf-8") as out:
        for row, reward in zip(rows, rewards, strict=True):
            out.write(json.dumps({**row, "reward": float(reward)}, ensure_ascii=False) + "\n")
    logger.info(
        "%d answers scored (mean reward %.4f) -> %s",
        len(rewards),
        float(np.mean(rewards)),
        output_path,
    )
    return output_path
