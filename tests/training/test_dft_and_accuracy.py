"""LLaMA-Factory's use_dft_loss (probability-weighted token loss) and compute_accuracy (token
accuracy at validation)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import tuneforge
from tuneforge.config.load import load_config
from tuneforge.errors import ConfigError
from tuneforge.training.dft import dft_loss
from tuneforge.training.fused_loss import causal_lm_loss
from tuneforge.training.token_accuracy import token_accuracy


def batch(seed=0, rows=3, length=40, width=16, vocab=50):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, length, width, generator=generator)
    weight = torch.randn(vocab, width, generator=generator)
    labels = torch.randint(0, vocab, (rows, length), generator=generator)
    labels[:, :10] = -100  # the prompt
    return hidden, weight, labels


def test_fused_dft_equals_dft_on_the_logits_in_value_and_gradient():
    hidden, weight, labels = batch()
    fused_h = hidden.clone().requires_grad_(True)
    plain_h = hidden.clone().requires_grad_(True)
    fused = causal_lm_loss(fused_h, weight, labels, dft=True)
    plain = dft_loss({"logits": plain_h @ weight.T}, labels)
    fused.backward()
    plain.backward()
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused_h.grad, plain_h.grad, rtol=1e-5, atol=1e-6)


def test_dft_weights_each_token_by_its_probability():
    hidden, weight, labels = batch(seed=1)
    logits = hidden @ weight.T
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
    targets = labels[:, 1:]
    kept = targets != -100
    picked = log_probs.gather(-1, targets.clamp(min=0)[..., None]).squeeze(-1)[kept]
    expected = (-picked * picked.exp()).sum() / kept.sum()
    assert dft_loss({"logits": logits}, labels) == pytest.approx(expected.item(), rel=1e-5)
    plain = causal_lm_loss(hidden, weight, labels)
    assert dft_loss({"logits": logits}, labels) < plain  # every weight is below one


def test_token_accuracy_counts_only_target_positions():
    predictions = np.array([[1, 2, 9, 0], [7, 3, 3, 3]])  # position t predicts label t + 1
    labels = np.array([[-100, 1, 2, 4], [-100, -100, 3, -100]])
    scores = token_accuracy(SimpleNamespace(predictions=predictions, label_ids=labels))
    assert scores["accuracy"] == pytest.approx(3 / 4)  # 1, 2 right, 4 wrong; 3 right


def test_dft_and_accuracy_through_a_run(base_config, tmp_path):
    short = {**base_config, "max_steps": 2, "val_size": 8, "eval_steps": 2, "save_steps": 10}
    plain = tuneforge.train({**short, "output_dir": str(tmp_path / "plain")})
    dft = tuneforge.train(
        {**short, "output_dir": str(tmp_path / "dft"), "use_dft_loss": True}
        | {"compute_accuracy": True}
    )
    logs = {
        run.output_dir.name: [
            json.loads(line) for line in (run.output_dir / "trainer_log.jsonl").open()
        ]
        for run in (plain, dft)
    }
    accuracy = [e["eval_accuracy"] for e in logs["dft"] if "eval_accuracy" in e]
    assert accuracy and 0 <= accuracy[0] <= 1
    assert not any("eval_accuracy" in e for e in logs["plain"])
    first = {name: next(e["loss"] for e in log if "loss" in e) for name, log in logs.items()}
    assert first["dft"] < first["plain"]  # the same first batch, weighted down


@pytest.mark.parametrize("key", ["use_dft_loss", "compute_accuracy"])
def test_they_apply_to_causal_lm_stages_only(key):
    with pytest.raises(ConfigError, match=f"{key} applies to stages sft and pt"):
        load_config({"dataset": "x", "stage": "cls", key: True})
