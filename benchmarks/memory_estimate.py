"""`tuneforge plan`'s memory estimate against the measured peak of real training runs.

Each configuration (LoRA / full / freeze, two batch sizes, two sequence lengths, with and
without gradient checkpointing; the preference stages dpo with the sigmoid, ORPO and SimPO losses,
full dpo with its reference copy, kto and rm) of the default model and of a tiny random model
trains a few steps through `tuneforge.train`, each in its own process. Measured: on a CPU the peak
resident memory (VmHWM) minus the resident memory after the training libraries are imported,
on a GPU torch's peak of allocated CUDA memory. The estimate is computed in this process,
before the child starts, for the same hardware.

Run: ``python benchmarks/memory_estimate.py [--steps 2] [--models default,tiny]
[--stages sft,preference]``.
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
ZH = list("模型从示例中学习损失缓慢下降学习率先预热然后沿余弦曲线衰减直到训练结束")

# (stage, pref_loss, finetuning_type, batch, cutoff_len, gradient_checkpointing)
CONFIGS = {
    "sft": [
        ("sft", "sigmoid", "lora", 2, 256, False),
        ("sft", "sigmoid", "full", 2, 256, False),
        ("sft", "sigmoid", "freeze", 2, 256, False),
        ("sft", "sigmoid", "lora", 4, 256, False),
        ("sft", "sigmoid", "full", 4, 256, False),
        ("sft", "sigmoid", "lora", 2, 512, False),
        ("sft", "sigmoid", "full", 2, 512, False),
        ("sft", "sigmoid", "lora", 2, 256, True),
        ("sft", "sigmoid", "full", 2, 256, True),
        # short samples packed into full rows: the per-sample attention path
        ("sft-packed", "sigmoid", "lora", 4, 512, False),
    ],
    "preference": [
        ("dpo", "sigmoid", "lora", 2, 256, False),
        ("dpo", "orpo", "lora", 2, 256, False),
        ("dpo", "simpo", "lora", 2, 256, False),
        ("dpo", "sigmoid", "full", 2, 256, False),
        ("kto", "sigmoid", "lora", 2, 256, False),
        ("rm", "sigmoid", "lora", 2, 256, False),
    ],
}


def make_dataset(folder: Path, n: int = 64, seed: int = 0) -> None:
    """Alpaca rows longer than any cutoff_len used here, so every row is exactly cutoff_len:
    `long` for sft, `long_pairs` (two different answers) for the preference stages; `short`
    (20-120 words each) for packing."""
    rng = random.Random(seed)
    rows, pairs, short = [], [], []
    for i in range(8 * n):
        words, sep = (EN, " ") if i % 2 == 0 else (ZH, "")
        instruction, output = (sep.join(rng.choices(words, k=rng.randint(10, 60))) for _ in "ab")
        short.append({"instruction": instruction, "input": "", "output": output})
    for i in range(n):
        words, sep = (EN, " ") if i % 2 == 0 else (ZH, "")
        instruction, output, other = (sep.join(rng.choices(words, k=k)) for k in (600, 900, 900))
        rows.append({"instruction": instruction, "input": "", "output": output})
        pairs.append({"instruction": instruction, "input": "", "chosen": output, "rejected": other})
    for name, data in (("long", rows), ("long_pairs", pairs), ("short", short)):
        text = json.dumps(data, ensure_ascii=False)
        (folder / f"{name}.json").write_text(text, encoding="utf-8")
    info = {
        "long": {"file_name": "long.json"},
        "short": {"file_name": "short.json"},
        "long_pairs": {"file_name": "long_pairs.json", "ranking": True},
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))


def make_tiny_model(folder: Path) -> Path:
    """A 2-layer random Llama with the default model's tokenizer (as the tests build it)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from tuneforge.models.default import ensure_default_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_default_model())
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def run_config(
    model: str,
    data: Path,
    out: Path,
    row: tuple[str, str, str, int, int, bool],
    steps: int,
) -> dict:
    stage, pref_loss, kind, batch, cutoff, checkpointing = row
    packed = stage == "sft-packed"
    return {
        "model_name_or_path": model,
        "stage": "sft" if packed else stage,
        "pref_loss": pref_loss,
        "dataset": "short" if packed else "long" if stage == "sft" else "long_pairs",
        "dataset_dir": str(data),
        "finetuning_type": kind,
        "per_device_train_batch_size": batch,
        "cutoff_len": cutoff,
        "gradient_checkpointing": checkpointing,
        **({"packing": True} if packed else {}),  # sft's default is padding-free batches
        "max_steps": steps,
        "learning_rate": 1e-5,
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": "none",
        "seed": 0,
        "output_dir": str(out),
        "overwrite_output_dir": True,
    }


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def child(config: dict) -> None:
    """Train one configuration and print its peak memory above the libraries' baseline."""
    import torch
    import transformers  # noqa: F401  (the libraries a run imports, before the baseline)
    from transformers import Trainer  # noqa: F401

    import tuneforge
    from tuneforge.training import stages  # noqa: F401

    cuda = torch.cuda.is_available()
    cfg = tuneforge.load_config(config)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _status("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    tuneforge.train(cfg)
    peak = torch.cuda.max_memory_allocated() if cuda else _status("VmHWM")
    print("RESULT " + json.dumps({"measured": peak - base}))


def estimate(config: dict) -> tuple[int, str]:
    """The plan's peak estimate for this machine (without the runtime reserve on a GPU,
    which torch's allocation counter does not see) and the precision it assumed."""
    import tuneforge
    from tuneforge.models import detect_hardware
    from tuneforge.planning.memory import estimate as estimate_memory
    from tuneforge.planning.memory import workload
    from tuneforge.planning.shape import model_shape

    cfg = tuneforge.load_config(config)
    hardware = detect_hardware()
    work = workload(cfg, hardware)
    peak = estimate_memory(model_shape(cfg), work)
    total = peak.peak - (peak.runtime if hardware.device == "cuda" else 0)
    return total, "bf16 autocast" if work.autocast else "fp32"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--models", default="default,tiny")
    parser.add_argument("--stages", default="sft,preference")
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    import logging

    import torch

    logging.disable(logging.INFO)
    work = Path(tempfile.mkdtemp(prefix="tuneforge-memory-"))
    data = work / "data"
    data.mkdir()
    make_dataset(data)
    models = {"default": "smollm2-135m-instruct", "tiny": str(make_tiny_model(work / "tiny"))}
    rows = []
    env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error", "TQDM_DISABLE": "1"}
    chosen = [row for group in args.stages.split(",") for row in CONFIGS[group]]
    for label in args.models.split(","):
        for row in chosen:
            stage, pref_loss, kind, batch, cutoff, checkpointing = row
            method = f"{stage} {pref_loss}" if stage == "dpo" else stage
            config = run_config(models[label], data, work / "out", row, args.steps)
            predicted, precision = estimate(config)
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(config)],
                capture_output=True,
                text=True,
                env=env,
            )
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not lines:
                sys.exit(
                    f"{label} {method} {kind} b{batch} s{cutoff} failed:\n{proc.stderr[-3000:]}"
                )
            measured = json.loads(lines[-1][7:])["measured"]
            rows.append(
                (
                    label,
                    method,
                    kind,
                    batch,
                    cutoff,
                    checkpointing,
                    precision,
                    predicted,
                    measured,
                    time.perf_counter() - started,
                )
            )
            print(
                f"{label} {method} {kind} b{batch} s{cutoff} gc={checkpointing}: estimate "
                f"{predicted / 1e9:.2f} GB, measured {measured / 1e9:.2f} GB",
                file=sys.stderr,
                flush=True,
            )
    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available()
        else (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    )
    what = "torch CUDA peak" if torch.cuda.is_available() else "peak RSS delta"
    print(f"\n{time.strftime('%Y-%m-%d')}, {device}, {args.steps} steps per run, measured = {what}")
    print(
        "| model | stage | method | batch | cutoff_len | grad. ckpt | precision | estimate GB | "
        "measured GB | error |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    worst = 0.0
    for label, method, kind, batch, cutoff, ckpt, precision, predicted, measured, _ in rows:
        error = predicted / measured - 1
        worst = max(worst, abs(error))
        print(
            f"| {label} | {method} | {kind} | {batch} | {cutoff} | {'yes' if ckpt else 'no'} | "
            f"{precision} | {predicted / 1e9:.2f} | {measured / 1e9:.2f} | {error:+.1%} |"
        )
    print(f"\nlargest error: {worst:.1%}")


if __name__ == "__main__":
    main()
