"""Samples per second of generation evaluation and of classification inference, default model.

Generation: the held-out identity questions (examples/data/identity_test.json, English and
Chinese) answered greedily through the one generation path, batched with left padding and
the KV cache, as `tuneforge eval` does. Classification: the example sentiment texts labelled
by the default model with a classification head, batched, one forward pass per batch. The
head is untrained here, which changes the labels but not the work.

    python benchmarks/eval_throughput.py                   # small settings, a few minutes on CPU
    python benchmarks/eval_throughput.py --samples 64 --batch 16 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import tuneforge
from tuneforge.eval.classify import load_classifier
from tuneforge.eval.generate import EvalSample, generate_predictions
from tuneforge.infer import load_chat_model, resolve_model

EXAMPLES = Path(__file__).parents[1] / "examples" / "data"


def repeat(items: list, count: int) -> list:
    return [items[i % len(items)] for i in range(count)]


def generation(samples: int, batch: int, max_new_tokens: int) -> tuple[float, float]:
    """(samples/s, generated tokens/s) of batched greedy answers."""
    cfg = tuneforge.load_config({"do_train": False, "max_new_tokens": max_new_tokens})
    chat = load_chat_model(resolve_model(None, cfg))
    rows = json.loads((EXAMPLES / "identity_test.json").read_text(encoding="utf-8"))
    todo = [
        EvalSample([{"role": "user", "content": r["instruction"]}], r["output"])
        for r in repeat(rows, samples)
    ]
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        answers = generate_predictions(
            chat, todo, cfg.generation, batch, Path(folder) / "p.jsonl", "benchmark"
        )
        seconds = time.perf_counter() - start
    tokens = sum(len(chat.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
    return samples / seconds, tokens / seconds


def classification(samples: int, batch: int) -> float:
    """Texts/s of batched label probabilities."""
    cfg = tuneforge.load_config(
        {"do_train": False, "stage": "cls", "cutoff_len": 128, "label_names": "negative,positive"}
    )
    classifier = load_classifier(cfg)
    lines = (EXAMPLES / "sentiment_en.jsonl").read_text(encoding="utf-8").splitlines()
    texts = repeat([json.loads(line)["text"] for line in lines], samples)
    start = time.perf_counter()
    classifier.probabilities(texts, batch)
    return samples / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=24, help="generation samples")
    parser.add_argument("--texts", type=int, default=256, help="classification texts")
    parser.add_argument("--batch", type=int, default=8, help="generation batch size")
    parser.add_argument("--cls-batch", type=int, default=32, help="classification batch size")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    args = parser.parse_args()

    per_sample, per_token = generation(args.samples, args.batch, args.max_new_tokens)
    texts = classification(args.texts, args.cls_batch)
    print(f"\n{'what':<44}{'samples/s':>10}")
    print(
        f"{f'generation eval (batch {args.batch}, <= {args.max_new_tokens} new tokens)':<44}"
        f"{per_sample:>10.2f}   ({per_token:.1f} generated tokens/s)"
    )
    print(f"{f'classification inference (batch {args.cls_batch})':<44}{texts:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
