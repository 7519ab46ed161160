"""The chunked linear + cross-entropy gives the loss and gradients of the plain path."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tuneforge.training.fused_loss import causal_lm_loss, linear_cross_entropy

# fp32 on both sides; only the summation order differs (chunks vs one matmul).
RTOL, ATOL = 1e-5, 1e-6


def plain(hidden, weight, labels, denominator=None):
    logits = hidden @ weight.T
    if denominator is None:
        return F.cross_entropy(logits, labels, ignore_index=-100)
    return F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum") / denominator


def case(seed=0, positions=700, width=32, vocab=300):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(positions, width, generator=generator)
    weight = torch.randn(vocab, width, generator=generator) * 0.2
    labels = torch.randint(0, vocab, (positions,), generator=generator)
    labels[torch.rand(positions, generator=generator) < 0.4] = -100  # prompt and padding
    return hidden, weight, labels


def grads(fn, hidden, weight, labels, **kwargs):
    hidden = hidden.clone().requires_grad_(True)
    weight = weight.clone().requires_grad_(True)
    loss = fn(hidden, weight, labels, **kwargs)
    loss.backward()
    return loss.detach(), hidden.grad, weight.grad


@pytest.mark.parametrize("chunk_rows", [1, 64, 256, 10_000])
@pytest.mark.parametrize("denominator", [None, 1000])
def test_loss_and_gradients_equal_the_plain_path(chunk_rows, denominator):
    hidden, weight, labels = case()
    loss, grad_hidden, grad_weight = grads(
        linear_cross_entropy,
        hidden,
        weight,
        labels,
        denominator=denominator,
        chunk_rows=chunk_rows,
    )
    ref_loss, ref_hidden, ref_weight = grads(plain, hidden, weight, labels, denominator=denominator)
    torch.testing.assert_close(loss, ref_loss, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(grad_hidden, ref_hidden, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(grad_weight, ref_weight, rtol=RTOL, atol=ATOL)
    assert grad_hidden[labels == -100].abs().max() == 0  # ignored positions get no gradient


def test_a_frozen_head_gets_no_gradient_and_the_hidden_states_still_do():
    hidden, weight, labels = case(seed=1)
    hidden.requires_grad_(True)
    linear_cross_entropy(hidden, weight, labels).backward()
    assert weight.grad is None and hidden.grad is not None
    with torch.no_grad():  # evaluation: the loss only
        torch.testing.assert_close(
            linear_cross_entropy(hidden, weight, labels), plain(hidden, weight, labels)
        )


def test_the_causal_shift_matches_transformers_loss():
    from transformers.loss.loss_utils import ForCausalLMLoss

    generator = torch.Generator().manual_seed(2)
    hidden = torch.randn(3, 11, 16, generator=generator)
    weight = torch.randn(50, 16, generator=generator)
    labels = torch.randint(0, 50, (3, 11), generator=generator)
    labels[:, :4] = -100
    expected = ForCausalLMLoss(hidden @ weight.T, labels, vocab_size=50, num_items_in_batch=17)
    torch.testing.assert_close(causal_lm_loss(hidden, weight, labels, 17), expected)


def test_no_counted_position_gives_a_zero_loss_not_nan():
    hidden, weight, _ = case(seed=3, positions=5)
    labels = torch.full((5,), -100)
    assert linear_cross_entropy(hidden, weight, labels).item() == 0.0


def test_training_with_the_fused_loss_follows_the_plain_loss(base_config, tmp_path, caplog):
    """Same data, seed and fp32 arithmetic: the logged losses and the trained adapter agree."""
    import json

    from safetensors.torch import load_file

    import tuneforge

    caplog.set_level("INFO", logger="tuneforge")
    runs = {}
    for fused in (True, False):
        out = tmp_path / f"fused-{fused}"
        config = {**base_config, "bf16": False, "max_steps": 4, "lora_dropout": 0.0}
        caplog.clear()
        tuneforge.train({**config, "fused_loss": fused, "output_dir": str(out)})
        assert ("Loss: fused linear + cross-entropy" in caplog.text) is fused
        log = [json.loads(line) for line in (out / "trainer_log.jsonl").read_text().splitlines()]
        runs[fused] = ([e["loss"] for e in log if "loss" in e], out)
    (fused_losses, fused_out), (plain_losses, plain_out) = runs[True], runs[False]
    assert len(fused_losses) == 4
    assert fused_losses == pytest.approx(plain_losses, rel=1e-4)
    fused_weights = load_file(fused_out / "adapter_model.safetensors")
    plain_weights = load_file(plain_out / "adapter_model.safetensors")
    for name, weight in plain_weights.items():
        torch.testing.assert_close(fused_weights[name], weight, rtol=1e-3, atol=1e-5)
