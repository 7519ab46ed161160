"""Checks that an exported model behaves like the model it came from.

An export can go wrong silently: a transposed weight, a lost chat template, a tokenizer that
splits text differently. Each check compares the export with the original (base + adapter)
on a few conversations in English and Chinese, position by position, and says how often they
agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from tuneforge.data import Message, Template

PROBES = (
    "Who are you?",
    "What is the capital of France?",
    "Write a short poem about autumn leaves.",
    "请用一句话介绍你自己。",
    "What is 12 times 7? Explain step by step.",
)


@dataclass(frozen=True)
class Check:
    """How many of `total` compared items agree, and the share that counts as passing."""

    name: str
    agreed: int
    total: int
    required: float
    unit: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.agreed >= self.required * self.total

    def __str__(self) -> str:
        share = 100 * self.agreed / self.total if self.total else 0.0
        detail = f", {self.detail}" if self.detail else ""
        verdict = "ok" if self.ok else f"FAILED (needs {100 * self.required:.0f}%)"
        return (
            f"{self.name}: {self.agreed}/{self.total} {self.unit} agree "
            f"({share:.1f}%{detail}) - {verdict}"
        )


def probe_prompts(template: Template) -> list[list[int]]:
    """The probe conversations as prompt ids, rendered by the template training used."""
    return [template.encode_prompt([{"role": "user", "content": text}]) for text in PROBES]


def logits_at_every_position(model: Any, prompts: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """float32 logits (positions x vocabulary) for each prompt, run one at a time."""
    out = []
    with torch.inference_mode():
        for ids in prompts:
            tensor = torch.tensor([list(ids)], device=model.device)
            out.append(model(input_ids=tensor).logits[0].float().cpu())
    return out


def compare_predictions(
    name: str,
    reference: Sequence[torch.Tensor],
    candidate: Sequence[torch.Tensor],
    *,
    required: float,
) -> Check:
    """Next-token (argmax) agreement at every prompt position, and the largest logit gap."""
    agreed = total = 0
    gap = 0.0
    for ref, cand in zip(reference, candidate, strict=True):
        agreed += int((ref.argmax(-1) == cand.argmax(-1)).sum())
        total += ref.shape[0]
        gap = max(gap, float((ref - cand).abs().max()))
    return Check(
        name, agreed, total, required, "next-token predictions", f"max |logit difference| {gap:.2g}"
    )


def compare_tokenization(name: str, template: Template, exported_tokenizer: Any) -> Check:
    """The export's own chat template and tokenizer must give the prompt ids training gave."""
    agreed = 0
    for text in PROBES:
        conversation: list[Message] = [{"role": "user", "content": text}]
        ours = template.tokenizer(
            template.render(conversation, add_generation_prompt=True), add_special_tokens=False
        )["input_ids"]
        theirs = exported_tokenizer.apply_chat_template(
            template.chat_messages(conversation),
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
        )["input_ids"]
        agreed += list(ours) == list(theirs)
    return Check(name, agreed, len(PROBES), 1.0, "prompts (chat template + tokenizer)")


def compare_prompt_ids(
    name: str, template: Template, tokenize: Callable[[str], list[int]]
) -> Check:
    """Another program's tokenizer (llama.cpp's) must split each rendered probe prompt into
    the ids training's tokenizer gives."""
    agreed = 0
    for text in PROBES:
        rendered = template.render([{"role": "user", "content": text}], add_generation_prompt=True)
        ours = template.tokenizer(rendered, add_special_tokens=False)["input_ids"]
        agreed += list(ours) == tokenize(rendered)
    return Check(name, agreed, len(PROBES), 1.0, "prompts (tokenizer)")
