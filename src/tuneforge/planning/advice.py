"""Rules of thumb for a run's hyper-parameters, applied to its model size, method and data.

Each rule gives an advised range and the reason for it; the sources are listed in
docs/plan.md. These are starting points that practitioners agree on, not laws: a row marked
"check" means the config is outside the usual range, which may be deliberate.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from tuneforge.config.schema import RunConfig
from tuneforge.config.val_size import validation_count
from tuneforge.data.lengths import Lengths, suggest_cutoff_len
from tuneforge.planning.shape import ModelShape

# Each band: (values below this limit, the advised range); the last one catches the rest.
Bands = tuple[tuple[float, tuple[float, float]], ...]

# (fewer than this many training samples, epochs advised)
EPOCH_BANDS = ((10_000, (3, 10)), (100_000, (2, 5)), (math.inf, (1, 3)))
# (models below this many parameters, LoRA learning rates advised); full fine-tuning: / 10
LORA_LR_BANDS = ((1e9, (5e-4, 1e-3)), (30e9, (1e-4, 5e-4)), (math.inf, (5e-5, 2e-4)))
FULL_LR_FACTOR = 10
# (fewer than this many training samples, LoRA ranks advised)
RANK_BANDS = ((2_000, (8, 16)), (20_000, (16, 32)), (math.inf, (32, 128)))
# Alpha above this multiple of the rank is "far above 2x": the update is scaled up that much.
ALPHA_LIMIT = 4
WARMUP_SHARE = (0.05, 0.15)
VAL_SHARE = (0.05, 0.1)
PATIENCE = (3, 5)
# (fewer than this many training samples, effective batch sizes advised)
BATCH_BANDS = ((1_000, (4, 16)), (math.inf, (16, 64)))
# Below this many training samples full fine-tuning mostly memorises: LoRA is advised.
FULL_FINETUNE_MIN_SAMPLES = 10_000
# dpo/kto: SFT's band for the same model and method, its low and high ends divided by these.
# Measured on the shipped DPO example (LoRA, 135M): 1e-4 for an epoch ordered the held-out
# pairs but left the answers as long as before; 5e-4 for 2 epochs shortened them by a third.
PREFERENCE_LR_DIVISORS = (10, 2)
PREFERENCE_EPOCHS = (1, 3)


@dataclass(frozen=True)
class Advice:
    """One row of the advice table."""

    setting: str
    value: str
    advised: str
    why: str
    ok: bool


def devices() -> int:
    """Data-parallel processes of this run (torchrun / accelerate set WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def training_samples(cfg: RunConfig, samples: int) -> int:
    """Samples left for training after the validation split."""
    return max(samples - validation_count(cfg.data.val_size, samples), 0)


def advise(cfg: RunConfig, shape: ModelShape, samples: int | None) -> list[Advice]:
    """The advice table for this config; `samples` is the training data size, when known."""
    train = training_samples(cfg, samples) if samples is not None else None
    rows = [_learning_rate(cfg, shape)]
    if train is not None:
        rows.append(_epochs(cfg, train))
    rows += [_warmup(cfg, train), *_validation(cfg)]
    if cfg.finetune.finetuning_type == "lora":
        rows.append(_alpha(cfg))
        if train is not None:
            rows.append(_rank(cfg, shape, train))
    elif train is not None and train < FULL_FINETUNE_MIN_SAMPLES:
        rows.append(
            Advice(
                "finetuning_type",
                cfg.finetune.finetuning_type,
                "lora",
                f"{train:,} samples cannot constrain {human_count(shape.trainable_params)} trained "
                f"parameters: full fine-tuning memorises them and forgets more",
                False,
            )
        )
    rows.append(_batch(cfg, train))
    return rows


def _band(bands: Bands, value: float) -> tuple[float, float]:
    """The advised range of the first band `value` is under (the last band otherwise)."""
    return next((advised for limit, advised in bands if value < limit), bands[-1][1])


def _epochs(cfg: RunConfig, train: int) -> Advice:
    low, high = _band(EPOCH_BANDS, train)
    why = (
        f"{train:,} training samples: fewer samples need more passes to learn, more "
        f"passes over many samples only overfit"
    )
    if cfg.finetune.preference:
        low, high = PREFERENCE_EPOCHS
        why = (
            f"{train:,} {'answers' if cfg.finetune.stage == 'kto' else 'pairs'}: preference "
            f"tuning learns in 1-3 passes; more over-fits the pairs (margins grow on training "
            f"data while held-out accuracy falls)"
        )
    if cfg.train.max_steps > 0:
        epochs = cfg.train.max_steps / max(1, _steps_per_epoch(cfg, train))
        value = f"max_steps={cfg.train.max_steps} (~{epochs:.1f} epochs)"
    else:
        epochs = cfg.train.num_train_epochs
        value = f"{epochs:g}"
    return Advice("num_train_epochs", value, f"{low:g}-{high:g}", why, low <= epochs <= high)


def _learning_rate(cfg: RunConfig, shape: ModelShape) -> Advice:
    low, high = _band(LORA_LR_BANDS, shape.total_params)
    method = cfg.finetune.finetuning_type
    why = f"LoRA on a {human_count(shape.total_params)}-parameter model"
    if method != "lora":
        low, high = low / FULL_LR_FACTOR, high / FULL_LR_FACTOR
        why = (
            f"{method} fine-tuning of a {human_count(shape.total_params)}-parameter model: "
            f"about a tenth of LoRA's rate, since every weight moves"
        )
    else:
        why += ": adapters start at zero and need ~10x full fine-tuning's rate; larger models "
        why += "need less"
    if cfg.finetune.stage in ("dpo", "kto"):
        low, high = low / PREFERENCE_LR_DIVISORS[0], high / PREFERENCE_LR_DIVISORS[1]
        why = (
            f"{cfg.finetune.stage} with {method} on a {human_count(shape.total_params)}-parameter "
            f"model: below SFT's rate; the policy starts from a model that already answers well "
            f"and larger steps wreck it, while the bottom of the band may order the pairs "
            f"without changing what the model writes"
        )
    value = cfg.train.learning_rate
    return Advice("learning_rate", f"{value:g}", f"{low:g}-{high:g}", why, low <= value <= high)


def _steps_per_epoch(cfg: RunConfig, train: int) -> int:
    return math.ceil(train / effective_batch(cfg))


def effective_batch(cfg: RunConfig) -> int:
    t = cfg.train
    return t.per_device_train_batch_size * t.gradient_accumulation_steps * devices()


def _warmup(cfg: RunConfig, train: int | None) -> Advice:
    t = cfg.train
    total = None
    if t.max_steps > 0:
        total = t.max_steps
    elif train is not None:
        total = math.ceil(t.num_train_epochs * _steps_per_epoch(cfg, train))
    share: float | None
    if 0 < t.warmup_steps < 1:  # a share of the steps, as transformers reads it
        share = t.warmup_steps
        value = f"warmup_steps={t.warmup_steps:g}" + (f" of {total:,} steps" if total else "")
    elif t.warmup_steps:
        share = t.warmup_steps / total if total else None
        value = f"warmup_steps={t.warmup_steps:g}" + (
            f" ({share:.0%} of {total:,})" if total else ""
        )
    else:
        share = t.warmup_ratio
        value = f"warmup_ratio={t.warmup_ratio:g}" + (f" of {total:,} steps" if total else "")
    low, high = WARMUP_SHARE
    return Advice(
        "warmup",
        value,
        f"{low:.0%}-{high:.0%} of the steps",
        "a few steps at a rising learning rate keep the first, large updates from "
        "wrecking the pretrained weights",
        share is not None and low <= share <= high,
    )


def _validation(cfg: RunConfig) -> list[Advice]:
    data, t = cfg.data, cfg.train
    has_validation = bool(data.val_size or data.eval_dataset)
    low, high = VAL_SHARE
    value = (
        f"eval_dataset={','.join(data.eval_dataset)}"
        if data.eval_dataset
        else f"val_size={data.val_size:g}"
    )
    rows = [
        Advice(
            "validation",
            value,
            f"val_size {low:g}-{high:g} or an eval_dataset",
            "without held-out data nothing shows over-fitting or picks the best checkpoint",
            has_validation,
        )
    ]
    low_p, high_p = PATIENCE
    patience = t.early_stopping_steps
    rows.append(
        Advice(
            "early_stopping_steps",
            str(patience) if patience else "off",
            f"{low_p}-{high_p} validations",
            "stop when validation loss stops improving and keep the best "
            "checkpoint; fewer stops on noise, more wastes steps",
            patience is not None and low_p <= patience <= high_p,
        )
    )
    return rows


def _alpha(cfg: RunConfig) -> Advice:
    f = cfg.finetune
    rank, alpha = f.lora_rank, f.resolved_lora_alpha
    value = f"{alpha} ({alpha / rank:g} x r={rank})"
    if f.use_rslora:
        return Advice(
            "lora_alpha",
            value,
            f"about {2 * math.sqrt(rank):.0f} (2 x sqrt(r))",
            "rsLoRA scales updates by alpha/sqrt(r), so alpha does not grow with r",
            alpha <= ALPHA_LIMIT * math.sqrt(rank),
        )
    return Advice(
        "lora_alpha",
        value,
        f"{rank}-{2 * rank} (r to 2r)",
        "the adapter's update is scaled by alpha/r: far above 2 it acts like a "
        "much larger learning rate and training turns unstable",
        alpha <= ALPHA_LIMIT * rank,
    )


def _rank(cfg: RunConfig, shape: ModelShape, train: int) -> Advice:
    low, high = _band(RANK_BANDS, train)
    rank = cfg.finetune.lora_rank
    per_sample = shape.trainable_params / max(train, 1)
    return Advice(
        "lora_rank",
        f"{rank} ({human_count(shape.trainable_params)} trained, {per_sample:,.0f} per sample)",
        f"{low:g}-{high:g}",
        f"{train:,} training samples: a higher rank gives the adapter room to "
        f"memorise them rather than learn the task",
        rank <= high,
    )


def _batch(cfg: RunConfig, train: int | None) -> Advice:
    t = cfg.train
    size = effective_batch(cfg)
    value = (
        f"{size} = {t.per_device_train_batch_size} x {t.gradient_accumulation_steps} "
        f"accumulation x {devices()} device(s)"
    )
    low, high = _band(BATCH_BANDS, train if train is not None else math.inf)
    why = "samples averaged per optimizer step: too few make noisy steps, too many make few"
    if train is not None:
        why += f" ({_steps_per_epoch(cfg, train):,} steps per epoch here)"
    return Advice("effective batch size", value, f"{low}-{high}", why, low <= size <= high)


def human_count(params: float) -> str:
    """1234567 -> '1.2M', 8.03e9 -> '8.0B'."""
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if params >= size:
            return f"{params / size:.1f}{unit}"
    return f"{params:.0f}"


# cls: a classifier run should take at least this many optimizer steps, in at most
# CLS_MAX_EPOCHS passes, and beyond CLS_FEW_EPOCHS small data is memorised. A starting
# point, not a measured optimum: 13 steps already lifted LP-FT above its probe on 200
# English texts, and 50 steps from a random head stayed at chance (docs/benchmarks.md).
CLS_MIN_STEPS = 50
CLS_FEW_EPOCHS = 3
CLS_MAX_EPOCHS = 10
# cls: cutting more than this share of the texts to cutoff_len is flagged.
CLS_TRUNCATED_SHARE = 0.2


def classifier_advice(cfg: RunConfig, train: int | None, lengths: Lengths | None) -> list[Advice]:
    """Stage cls: the steps and epochs its data size needs (replacing the generic epochs
    row), and the cutoff_len the token lengths of this tokenizer on these texts call for."""
    rows = []
    if train is not None:
        rows.append(_classifier_epochs(cfg, train))
    if lengths is not None and lengths.values:
        rows.append(classifier_cutoff(cfg.data.cutoff_len, lengths))
    return rows


def _classifier_epochs(cfg: RunConfig, train: int) -> Advice:
    per_epoch = max(1, _steps_per_epoch(cfg, train))  # no texts: the data check says so
    t = cfg.train
    total = t.max_steps if t.max_steps > 0 else math.ceil(t.num_train_epochs * per_epoch)
    epochs = total / per_epoch
    low = min(CLS_MAX_EPOCHS, max(1, math.ceil(CLS_MIN_STEPS / per_epoch)))
    high = max(low, CLS_FEW_EPOCHS)
    return Advice(
        "num_train_epochs",
        f"{epochs:g} ({total:,} steps, {per_epoch:,} per epoch)",
        f"{low if low == high else f'{low}-{high}'} (>= {CLS_MIN_STEPS} steps)",
        f"{train:,} texts at batch {effective_batch(cfg)}: about {CLS_MIN_STEPS} steps give "
        f"the adapters room to improve on the head's linear probe; after "
        f"{CLS_FEW_EPOCHS} passes a small set is memorised",
        low <= epochs <= high,
    )


def classifier_cutoff(cutoff_len: int, lengths: Lengths) -> Advice:
    """cutoff_len against the token lengths of the texts: a classifier reads only the first
    cutoff_len tokens; flagged when more than CLS_TRUNCATED_SHARE of the texts are cut."""
    count = len(lengths.values)
    cut = sum(1 for length in lengths.values if length > cutoff_len)
    share = cut / count
    return Advice(
        "cutoff_len",
        f"{cutoff_len} (cuts {cut:,} of {count:,} texts, {share:.0%})",
        f"{suggest_cutoff_len(lengths)} (p95, rounded up)",
        f"this tokenizer on these texts: p50 {lengths.percentile(50):,} / p90 "
        f"{lengths.percentile(90):,} / p95 {lengths.percentile(95):,} / max "
        f"{max(lengths.values):,} tokens; the head never sees what is cut, and batches pad "
        f"only to their longest text",
        share <= CLS_TRUNCATED_SHARE,
    )
