"""LoRA SFT throughput: tuneforge vs a plain transformers Trainer + peft script, same job.

Every run fine-tunes the embedded default model (LoRA r8, all linear layers, batch 4,
cutoff 512) on the same fixed, mixed-length English/Chinese alpaca data, each in its own
process, one after the other: the plain script (pad to the longest, with and without
gradient checkpointing), tuneforge's defaults, and tuneforge with one speed-up switched off
at a time, so the table shows what each buys. Reported: useful (non-padding) tokens per
second of training, the process's peak RSS and the training loss at the last step.
Run: ``python benchmarks/train_throughput.py [--steps 30] [--variant-steps 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EN = (
    "the model learns from examples and the loss falls slowly while the learning rate "
    "warms up and then decays along a cosine curve until training ends"
).split()
ZH = list(
    "模型从示例中学习损失缓慢下降学习率先预热然后沿余弦曲线衰减直到训练结束数据质量比数量更重要"
)


def make_dataset(folder: Path, n: int = 512, seed: int = 0) -> None:
    """Deterministic alpaca rows: half English, half Chinese, prompts and answers of mixed
    length."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        words, sep = (EN, " ") if i % 2 == 0 else (ZH, "")
        prompt = sep.join(rng.choices(words, k=rng.randint(5, 60)))
        answer = sep.join(rng.choices(words, k=int(rng.paretovariate(1.2) * 20) % 350 + 5))
        rows.append({"instruction": prompt, "input": "", "output": answer})
    (folder / "mixed.json").write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    (folder / "dataset_info.json").write_text(json.dumps({"mixed": {"file_name": "mixed.json"}}))


def peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


# tuneforge runs: the defaults, then one optimisation off at a time (its config key).
VARIANTS = {
    "tuneforge": {},
    "tuneforge packing: true": {"packing": True},
    "tuneforge packing: false": {"packing": False},
    "tuneforge flash_attn: sdpa": {"flash_attn": "sdpa"},
    "tuneforge fused_loss: false": {"fused_loss": False},
}
PLAIN = {"plain": False, "plain + gradient checkpointing": True}


def run_plain(data_dir: Path, steps: int, checkpointing: bool) -> dict:
    """What a practitioner writes by hand: chat template, prompt masked, pad to longest."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from tuneforge.models.default import ensure_default_model

    path = ensure_default_model()
    tok = AutoTokenizer.from_pretrained(path)
    rows = json.loads((data_dir / "mixed.json").read_text())

    def encode(row):
        prompt = [{"role": "user", "content": row["instruction"]}]
        p = tok.apply_chat_template(prompt, add_generation_prompt=True, return_dict=True)
        full = tok.apply_chat_template(
            prompt + [{"role": "assistant", "content": row["output"]}], return_dict=True
        )
        p, full = list(p["input_ids"]), list(full["input_ids"])[:512]
        return {"input_ids": full, "labels": [-100] * len(p) + full[len(p) :]}

    ds = Dataset.from_list([encode(r) for r in rows])
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model = get_peft_model(
        model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM")
    )
    counted = {"tokens": 0}

    def collate(features):
        counted["tokens"] += sum(len(f["input_ids"]) for f in features)
        return DataCollatorForSeq2Seq(tok, padding=True)(features)

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            counted["tokens"], self.t = 0, time.perf_counter()

        def on_train_end(self, *a, **k):
            counted["seconds"] = time.perf_counter() - self.t

        def on_log(self, args, state, control, logs=None, **k):
            if logs and "loss" in logs:
                counted["loss"] = logs["loss"]

    args = TrainingArguments(
        output_dir=tempfile.mkdtemp(),
        per_device_train_batch_size=4,
        max_steps=steps,
        learning_rate=1e-4,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        logging_steps=steps,
        disable_tqdm=True,
        seed=0,
        gradient_checkpointing=checkpointing,
    )
    Trainer(
        model=model, args=args, train_dataset=ds, data_collator=collate, callbacks=[Clock()]
    ).train()
    return {
        "tokens": counted["tokens"],
        "seconds": counted["seconds"],
        "precision": "fp32",
        "loss": counted.get("loss"),
    }


def run_tuneforge(data_dir: Path, steps: int, overrides: dict) -> dict:
    import tuneforge

    out = Path(tempfile.mkdtemp())
    cfg = tuneforge.load_config(
        {
            "dataset": "mixed",
            "dataset_dir": str(data_dir),
            "cutoff_len": 512,
            "lora_rank": 8,
            "lora_target": "all",
            "per_device_train_batch_size": 4,
            "max_steps": steps,
            "learning_rate": 1e-4,
            "report_to": "none",
            "save_strategy": "no",
            "logging_steps": steps,
            "output_dir": str(out / "run"),
            "seed": 42,  # the plain Trainer's default: both draw the same samples in order
            **overrides,
        }
    )
    result = tuneforge.train(cfg)
    log = [json.loads(line) for line in (out / "run" / "trainer_log.jsonl").open()]
    return {
        "tokens": log[-1]["tokens"],
        "seconds": result.metrics["train_runtime"],
        "precision": "bf16 autocast" if _uses_bf16(out / "run") else "fp32",
        "loss": next((row["loss"] for row in reversed(log) if "loss" in row), None),
    }


def _uses_bf16(run: Path) -> bool:
    from tuneforge.config import TrainArgs
    from tuneforge.models import choose_precision

    return choose_precision(TrainArgs()).bf16


def child(kind: str, data_dir: Path, steps: int) -> None:
    if kind in PLAIN:
        result = run_plain(data_dir, steps, PLAIN[kind])
    else:
        result = run_tuneforge(data_dir, steps, VARIANTS[kind])
    result["peak_rss_gb"] = peak_rss_gb()
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=30, help="plain and tuneforge defaults")
    parser.add_argument("--variant-steps", type=int, default=10, help="the other rows")
    parser.add_argument("--runs", help="comma-separated row names (default: all)")
    parser.add_argument("--child")
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.data), args.steps)
        return
    runs = args.runs.split(",") if args.runs else [*PLAIN, *VARIANTS]
    data_dir = Path(tempfile.mkdtemp())
    make_dataset(data_dir)
    results = {}
    for kind in runs:
        steps = args.steps if kind in ("plain", "tuneforge") else args.variant_steps
        proc = subprocess.run(
            [sys.executable, __file__, "--child", kind, "--data", str(data_dir)]
            + ["--steps", str(steps)],
            capture_output=True,
            text=True,
            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.exit(f"{kind} run failed:\n{proc.stderr[-3000:]}")
        results[kind] = {**json.loads(line[-1][7:]), "steps": steps}
        print(kind, results[kind], flush=True)
    print(
        f"\n{time.strftime('%Y-%m-%d %H:%M')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, batch 4, cutoff 512, "
        "LoRA r8 all-linear"
    )
    plain = results.get("plain")
    print(
        "| run | steps | precision | useful tokens | seconds | useful tokens/s | vs plain "
        "| peak RSS GB | mean loss |"
    )
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for kind, r in results.items():
        rate = r["tokens"] / r["seconds"]
        ratio = f"{rate / (plain['tokens'] / plain['seconds']):.2f}x" if plain else "-"
        loss = f"{r['loss']:.4f}" if r.get("loss") is not None else "-"
        print(
            f"| {kind} | {r['steps']} | {r['precision']} | {r['tokens']} | {r['seconds']:.1f} | "
            f"{rate:.1f} | {ratio} | {r['peak_rss_gb']:.2f} | {loss} |"
        )


if __name__ == "__main__":
    main()
