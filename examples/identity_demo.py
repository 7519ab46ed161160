"""The quick-start demo: rename the embedded default model without breaking it.

Fine-tunes SmolLM2-135M-Instruct with LoRA on examples/data/identity.json (it learns to call
itself ForgeBot) mixed with examples/data/general_mini.json (short general questions and
instructions, so that it does not answer everything with its new name). Then it asks identity
questions that are NOT in the training data, and runs tuneforge's forgetting check (the same
as ``tuneforge eval examples/identity_eval.yaml --adapter saves/identity-lora --forgetting``),
printing the base model's answers beside the tuned ones.

It exits 1, with one line per failed threshold, if the new name is used in fewer than
MIN_NAMED held-out answers or if the tuned model keeps less than MIN_KEPT of the base model's
correct general answers. Run with ``make demo`` or ``python examples/identity_demo.py``
(``key=value`` arguments override the training config).
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import tuneforge
from tuneforge.monitor.forgetting import ForgettingResult, check_adapter

if TYPE_CHECKING:
    from tuneforge.config import RunConfig

HERE = Path(__file__).parent
NEW_NAME = "ForgeBot"
HELD_OUT = [  # paraphrases that do not occur in identity.json
    "Hey there, who am I talking to right now?",
    "Could you tell me your name, please?",
    "What should I call you?",
    "你到底是谁？",
    "请问你的名字是什么？",
]
MIN_NAMED = 4  # of the len(HELD_OUT) held-out answers
MIN_KEPT = 0.9  # share of the base model's correct general answers the tuned model keeps
SHOWN = (0, 5, 9, 15, 20, 25)  # forgetting-check questions printed side by side


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[tuneforge] %(levelname)s %(message)s")
    marks = [time.perf_counter()]
    cfg = tuneforge.load_config(HERE / "identity_lora.yaml", sys.argv[1:])
    result = tuneforge.train(cfg)
    adapter = str(result.output_dir)
    marks.append(time.perf_counter())
    named = ask_identity(cfg, adapter)
    marks.append(time.perf_counter())
    forgetting = check_adapter(
        tuneforge.load_config(HERE / "identity_eval.yaml", ["do_train=false"]), adapter
    )
    right = show_forgetting(forgetting)
    marks.append(time.perf_counter())

    train_s, ask_s, check_s = (end - begin for begin, end in zip(marks, marks[1:], strict=False))
    print(
        f"\nDemo finished in {(marks[-1] - marks[0]) / 60:.1f} min (training {train_s:.0f} s, "
        f"identity questions {ask_s:.0f} s, forgetting check {check_s:.0f} s); the adapter "
        f"is in {adapter}; try:\n  tuneforge chat --adapter {adapter}"
    )
    failures = thresholds(named, right, forgetting.kept["answers_correct"])
    for failure in failures:
        print(f"DEMO FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


def ask_identity(cfg: RunConfig, adapter: str) -> int:
    """Ask the held-out identity questions; print both answers; count the tuned answers that
    use the new name. The base model gets the same system prompt (the config's)."""
    base, tuned = tuneforge.chat(cfg), tuneforge.chat(adapter)
    named = 0
    print(f"\n{'=' * 24} held-out identity questions: base vs tuned {'=' * 24}")
    asked = [[{"role": "user", "content": question}] for question in HELD_OUT]
    befores, afters = base.replies(asked, cfg.generation), tuned.replies(asked, cfg.generation)
    for question, before, after in zip(HELD_OUT, befores, afters, strict=True):
        named += NEW_NAME.lower() in after.lower()
        print(f"\nQ: {question}\n  base : {one_line(before)}\n  tuned: {one_line(after)}")
    print(
        f"\nThe tuned model used the new name in {named}/{len(HELD_OUT)} held-out answers "
        f"(the demo needs {MIN_NAMED})."
    )
    return named


def show_forgetting(result: ForgettingResult) -> tuple[int, int, int]:
    """Print a few of the check's general questions and its summary; return (base right,
    tuned right, questions)."""
    print(f"\n{'=' * 20} general questions (the forgetting check): base vs tuned {'=' * 20}")
    for index in SHOWN:
        if index < len(result.answers):
            row = result.answers[index]
            print(
                f"\nQ: {row['question']}   (accepted: {', '.join(row['accepted'])})\n"
                f"  base : {one_line(row['base'])}\n  tuned: {one_line(row['tuned'])}"
            )
    total = len(result.answers)
    base, tuned = (round(side["answers_correct"] * total) for side in (result.base, result.tuned))
    kept = result.kept["answers_correct"]
    print(f"\n{result.table()}\n")
    print(
        f"General short answers correct: base {base}/{total}, tuned {tuned}/{total} "
        f"(kept {share(kept)}; the demo needs {MIN_KEPT:.0%})."
    )
    print(
        f"Perplexity on general text kept: English {share(result.kept.get('perplexity_en'))}, "
        f"Chinese {share(result.kept.get('perplexity_zh'))} (100% = unchanged)."
    )
    if result.path is not None:
        print(f"Every question's two answers: {result.path}")
    return base, tuned, total


def thresholds(named: int, right: tuple[int, int, int], kept: float | None) -> list[str]:
    """One line per threshold the run missed."""
    failures = []
    if named < MIN_NAMED:
        failures.append(
            f"the tuned model used the new name in {named}/{len(HELD_OUT)} held-out "
            f"identity answers; at least {MIN_NAMED} are needed"
        )
    base, tuned, total = right
    if kept is not None and kept < MIN_KEPT:
        failures.append(
            f"the tuned model answered {tuned}/{total} general questions right, the "
            f"base {base}/{total}: it kept {kept:.0%} of the base model's correct "
            f"answers; at least {MIN_KEPT:.0%} are needed"
        )
    return failures


def share(kept: float | None) -> str:
    return "n/a" if kept is None else f"{kept:.1%}"


def one_line(text: str) -> str:
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
