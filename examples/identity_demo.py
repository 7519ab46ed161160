"""The quick-start demo: rename the embedded default model, then compare before and after.

Fine-tunes SmolLM2-135M-Instruct with LoRA on examples/data/identity.json (it learns to call
itself ForgeBot), then asks questions that are NOT in the training data and prints the base
model's answer beside the tuned one. Run with ``make demo`` or ``python examples/identity_demo.py``.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import tuneforge

HERE = Path(__file__).parent
NEW_NAME = "ForgeBot"
HELD_OUT = [  # paraphrases that do not occur in identity.json
    "Hey there, who am I talking to right now?",
    "Could you tell me your name, please?",
    "What should I call you?",
    "你到底是谁？",
    "请问你的名字是什么？",
]


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="[tuneforge] %(levelname)s %(message)s")
    start = time.perf_counter()
    cfg = tuneforge.load_config(HERE / "identity_lora.yaml", sys.argv[1:])
    result = tuneforge.train(cfg)

    base = tuneforge.chat()  # the default model: the one identity_lora.yaml fine-tunes
    tuned = tuneforge.chat(result.output_dir)
    hits = 0
    print(f"\n{'=' * 30} held-out questions: base vs tuned {'=' * 30}")
    for question in HELD_OUT:
        messages = [{"role": "user", "content": question}]
        before, after = base.reply(messages, cfg.generation), tuned.reply(messages, cfg.generation)
        hits += NEW_NAME.lower() in after.lower()
        print(f"\nQ: {question}\n  base : {before}\n  tuned: {after}")
    elapsed = time.perf_counter() - start
    print(f"\nThe tuned model used the new name in {hits}/{len(HELD_OUT)} held-out answers.")
    print(f"Demo finished in {elapsed / 60:.1f} min; the adapter is in {result.output_dir}; try:")
    print(f"  tuneforge chat --adapter {result.output_dir}")
    return 0 if hits >= len(HELD_OUT) - 1 else 1


if __name__ == "__main__":
    sys.exit(main())
