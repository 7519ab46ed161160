"""LoRA on fp32 weights vs QLoRA on 8-bit and 4-bit weights, on the CPU, same job.

Each variant fine-tunes the embedded default model (LoRA r8, all linear layers) for a few
steps on the same mixed-length English/Chinese alpaca data as train_throughput.py, in its
own process, computing in fp32 (``--precision auto`` lets bf16 in where the CPU has it).
Reported: useful (non-padding) tokens per second of training; the RSS when training starts
(weights, adapters and runtime, after loading) and its peak during training; and the
process's peak RSS, which for a small model is set by loading (the checkpoint is read in
fp32 before it is quantised) rather than by training.
Run: ``python benchmarks/qlora_cpu.py [--steps 10 --batch 4 --cutoff 256]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import make_dataset, peak_rss_gb  # noqa: E402

VARIANTS = {"lora-fp32": None, "qlora-8bit": 8, "qlora-4bit": 4}


def rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def watch_training_memory(figures: dict) -> None:
    """Add a callback to every trainer tuneforge builds: RSS at train start, peak while training."""
    from transformers import TrainerCallback

    from tuneforge.training import stages

    class MemoryWatch(TrainerCallback):
        def on_train_begin(self, *args, **kwargs):
            figures["start_rss_gb"] = figures["train_peak_rss_gb"] = rss_gb()
            self.running = True
            threading.Thread(target=self.sample, daemon=True).start()

        def sample(self):
            while self.running:
                figures["train_peak_rss_gb"] = max(figures["train_peak_rss_gb"], rss_gb())
                time.sleep(0.05)

        def on_train_end(self, *args, **kwargs):
            self.running = False

    build = stages.build_trainer

    def build_and_watch(*args, **kwargs):
        trainer = build(*args, **kwargs)
        trainer.add_callback(MemoryWatch())
        return trainer

    stages.build_trainer = build_and_watch


def run(variant: str, data_dir: Path, args: argparse.Namespace) -> dict:
    import tuneforge

    figures: dict = {}
    watch_training_memory(figures)

    out = Path(tempfile.mkdtemp()) / variant
    cfg = tuneforge.load_config(
        {
            "dataset": "mixed",
            "dataset_dir": str(data_dir),
            "cutoff_len": args.cutoff,
            "lora_rank": 8,
            "lora_target": "all",
            "per_device_train_batch_size": args.batch,
            "max_steps": args.steps,
            "learning_rate": 1e-4,
            "report_to": "none",
            "save_strategy": "no",
            "logging_steps": 1,
            "output_dir": str(out),
            "seed": 0,
            "quantization_bit": VARIANTS[variant],
            **({"bf16": False} if args.precision == "fp32" else {}),
        }
    )
    result = tuneforge.train(cfg)
    log = [json.loads(line) for line in (out / "trainer_log.jsonl").open()]
    return {
        "tokens": log[-1]["tokens"],
        "seconds": result.metrics["train_runtime"],
        "loss": [e["loss"] for e in log if "loss" in e][-1],
        **figures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cutoff", type=int, default=256)
    parser.add_argument("--precision", choices=["fp32", "auto"], default="fp32")
    parser.add_argument("--child", choices=list(VARIANTS))
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.child:
        result = run(args.child, Path(args.data), args)
        result["peak_rss_gb"] = peak_rss_gb()
        print("RESULT " + json.dumps(result))
        return
    data_dir = Path(tempfile.mkdtemp())
    make_dataset(data_dir)
    results = {}
    for variant in VARIANTS:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--child",
                variant,
                "--data",
                str(data_dir),
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
                "--cutoff",
                str(args.cutoff),
                "--precision",
                args.precision,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "TRANSFORMERS_VERBOSITY": "error"},
        )
        line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
        if proc.returncode or not line:
            sys.exit(f"{variant} run failed:\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(line[-1][7:])
        print(f"{variant}: done", file=sys.stderr)
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, {args.steps} steps, batch {args.batch}, cutoff {args.cutoff}, "
        f"LoRA r8 all-linear, compute {args.precision}"
    )
    print(
        "| run | useful tokens/s | RSS at train start GB | peak RSS training GB "
        "| peak RSS process GB | last loss |"
    )
    print("|---|---|---|---|---|---|")
    for variant, r in results.items():
        print(
            f"| {variant} | {r['tokens'] / r['seconds']:.1f} | {r['start_rss_gb']:.2f} | "
            f"{r['train_peak_rss_gb']:.2f} | {r['peak_rss_gb']:.2f} | {r['loss']:.3f} |"
        )
    base = results["lora-fp32"]
    for variant in ("qlora-8bit", "qlora-4bit"):
        r = results[variant]
        speed = (r["tokens"] / r["seconds"]) / (base["tokens"] / base["seconds"])
        print(
            f"{variant}: {speed:.2f}x the speed of LoRA fp32, "
            f"{r['train_peak_rss_gb'] / base['train_peak_rss_gb']:.2f}x its peak RSS "
            f"while training"
        )


if __name__ == "__main__":
    main()
