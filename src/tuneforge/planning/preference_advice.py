"""Advice rows only the preference stages have: beta, KTO's weights, the reward model's check.

Their learning rate and epochs are rows of the common table (`advice`), with the bands of
preference tuning. The counts are read with the data layer's own preference reader, so they
are the rows training will see (pairs split in two for kto, the validation split taken off).
"""

from __future__ import annotations

from dataclasses import dataclass

from tuneforge.config.schema import RunConfig
from tuneforge.planning.advice import Advice
from tuneforge.planning.preference_step import REFERENCE_FREE_LOSSES

# pref_beta: DPO, IPO, KTO, ORPO and the rest; SimPO's beta scales a length-normalised reward,
# so it is larger (the SimPO paper uses 2-10).
PREF_BETA = (0.01, 0.5)
SIMPO_BETA = (2.0, 10.0)
# kto: trl's rule for the weights: good weight x good answers / (bad weight x bad answers).
KTO_BALANCE = (1.0, 4 / 3)


@dataclass(frozen=True)
class PreferenceCounts:
    """The preference data's size: samples before the validation split, and (kto) the
    training answers marked good and bad."""

    samples: int
    good: int = 0
    bad: int = 0


def count_preferences(cfg: RunConfig) -> PreferenceCounts:
    """Read the configured preference datasets as training will (no tokenizer needed)."""
    from tuneforge.data.prepare import read_splits

    raw = read_splits(cfg, None)
    if cfg.finetune.stage != "kto":
        return PreferenceCounts(sum(raw.samples.values()))
    marks = list(raw.train["label"])
    return PreferenceCounts(sum(raw.samples.values()), marks.count(True), marks.count(False))


def preference_advice(cfg: RunConfig, counts: PreferenceCounts | None) -> list[Advice]:
    """Rows for stages dpo, kto and rm (none for the others)."""
    stage = cfg.finetune.stage
    if stage == "rm":
        return [_reward_check(cfg)]
    if stage not in ("dpo", "kto"):
        return []
    rows = [_beta(cfg)]
    if stage == "kto" and counts is not None and counts.good and counts.bad:
        rows.append(_kto_weights(cfg, counts))
    return rows


def _beta(cfg: RunConfig) -> Advice:
    f = cfg.finetune
    simpo = f.stage == "dpo" and f.pref_loss == "simpo"
    low, high = SIMPO_BETA if simpo else PREF_BETA
    if simpo:
        why = "SimPO: the scale of its length-normalised reward; its margin is simpo_gamma"
    elif f.stage == "dpo" and f.pref_loss in REFERENCE_FREE_LOSSES:
        why = "ORPO: the weight of the odds-ratio term beside the SFT loss; 0.1 is usual"
    else:
        why = (
            "how far the policy may drift from the reference; 0.1 is usual: lower lets it "
            "drift far (and forget), higher keeps it close and learns little"
        )
    return Advice(
        "pref_beta", f"{f.pref_beta:g}", f"{low:g}-{high:g}", why, low <= f.pref_beta <= high
    )


def _kto_weights(cfg: RunConfig, counts: PreferenceCounts) -> Advice:
    """trl's rule: the weighted good answers should match or slightly outnumber the bad."""
    f = cfg.finetune
    ratio = f.kto_chosen_weight * counts.good / (f.kto_rejected_weight * counts.bad)
    low, high = KTO_BALANCE
    per_good = f.kto_rejected_weight * counts.bad / counts.good
    return Advice(
        "kto weights",
        f"{f.kto_chosen_weight:g} x {counts.good:,} good / {f.kto_rejected_weight:g} x "
        f"{counts.bad:,} bad = {ratio:.2f}",
        f"kto_chosen_weight {low * per_good:.2g}-{high * per_good:.2g}",
        "good and bad answers weigh in as chosen weight x good / (rejected weight x bad): "
        "trl's KTO rule is 1-4/3; further off, the larger side dominates the loss",
        low <= ratio <= high + 1e-9,
    )


def _reward_check(cfg: RunConfig) -> Advice:
    """A reward model is only as good as its held-out accuracy: a policy tuned against it
    finds the answers it over-scores."""
    data = cfg.data
    has_validation = bool(data.val_size or data.eval_dataset)
    return Advice(
        "reward model check",
        "validation " + ("on" if has_validation else "off"),
        "held-out pairs",
        "a policy tuned against a reward model learns what it over-scores (length, "
        "flattery): check held-out pairwise accuracy and read its top-scored answers",
        has_validation,
    )
