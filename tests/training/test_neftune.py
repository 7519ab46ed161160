"""LLaMA-Factory's `neftune_noise_alpha`: noise on the input embeddings while training only,
through transformers' own NEFTune hook."""

from __future__ import annotations

import json

import pytest

import tuneforge
from tuneforge.errors import ConfigError


def first_loss(config: dict) -> float:
    out = tuneforge.train(config).output_dir
    entries = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
    return next(e["loss"] for e in entries if "loss" in e)


def test_noise_changes_the_training_loss_and_is_saved_with_the_run(base_config, tmp_path):
    short = {**base_config, "max_steps": 1, "save_steps": 10}
    plain = first_loss({**short, "output_dir": str(tmp_path / "plain")})
    again = first_loss({**short, "output_dir": str(tmp_path / "again")})
    noisy = first_loss({**short, "output_dir": str(tmp_path / "noisy"), "neftune_noise_alpha": 50})
    assert plain == pytest.approx(again)  # the run is deterministic: the noise is the difference
    assert abs(noisy - plain) > 1e-3
    # A resumed or repeated run reads the setting back from the run folder.
    saved = tuneforge.load_config(tmp_path / "noisy" / "tuneforge_config.yaml")
    assert saved.train.neftune_noise_alpha == 50


def test_noise_alpha_must_be_positive(tiny_model_dir):
    with pytest.raises(ConfigError, match="neftune_noise_alpha"):
        tuneforge.load_config(
            {"model_name_or_path": str(tiny_model_dir), "dataset": "x", "neftune_noise_alpha": 0}
        )
