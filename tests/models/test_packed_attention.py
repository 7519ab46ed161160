"""Per-sample attention over packed rows gives the loss and gradients of transformers' masked
sdpa path, and each packed sample the logits it has alone."""

from __future__ import annotations

import pytest
import torch

from tuneforge.config import ModelArgs
from tuneforge.models.load import load_model
from tuneforge.models.packed_attention import PACKED_SDPA, sample_bounds

# fp32 on both sides; only the order of the sums differs (per sample vs one masked call).
ATOL = 1e-5


def _positions(*lengths: int) -> list[int]:
    return [p for n in lengths for p in range(n)]


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 4000, (3, 40), generator=generator)
    positions = torch.tensor([_positions(7, 20, 13), _positions(40), _positions(1, 30, 9)])
    labels = ids.clone()
    labels[:, :3] = -100
    return ids, positions, labels


def _model(folder, attention):
    model = load_model(ModelArgs(model_name_or_path=str(folder), flash_attn="sdpa"))
    model.set_attn_implementation(attention)
    return model.train()


def _loss_and_grads(model, ids, positions, labels):
    model.zero_grad()
    out = model(input_ids=ids, position_ids=positions, labels=labels, use_cache=False)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.loss.detach(), out.logits.detach(), grads


def test_sample_bounds_split_where_positions_restart():
    positions = torch.tensor([_positions(3, 2, 4), _positions(9)])
    assert sample_bounds(positions) == [[0, 3, 5, 9], [0, 9]]


def test_same_loss_and_gradients_as_masked_sdpa(tiny_model_dir, batch):
    torch.manual_seed(0)
    plain = _loss_and_grads(_model(tiny_model_dir, "sdpa"), *batch)
    packed = _loss_and_grads(_model(tiny_model_dir, PACKED_SDPA), *batch)
    assert torch.allclose(plain[0], packed[0], atol=ATOL)
    assert torch.allclose(plain[1], packed[1], atol=ATOL)
    assert plain[2].keys() == packed[2].keys() and plain[2]
    for name, grad in plain[2].items():
        assert torch.allclose(grad, packed[2][name], atol=ATOL), name


def test_each_packed_sample_sees_only_itself(tiny_model_dir, batch):
    ids, positions, _ = batch
    model = _model(tiny_model_dir, PACKED_SDPA).eval()
    with torch.no_grad():
        packed = model(input_ids=ids, position_ids=positions, use_cache=False).logits
        alone = model(input_ids=ids[:1, 7:27], use_cache=False).logits
    assert torch.allclose(packed[:1, 7:27], alone, atol=ATOL)
    # and the sample after it is not the same as it would be attending across the boundary
    with torch.no_grad():
        crossing = model(input_ids=ids[:1, :27], use_cache=False).logits
    assert not torch.allclose(packed[:1, 7:27], crossing[:, 7:27], atol=1e-3)


def test_padding_and_generation_fall_back_to_sdpa(tiny_model_dir):
    ids = torch.tensor([[5, 6, 7, 8], [0, 0, 9, 10]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])
    outs = {}
    for attention in ("sdpa", PACKED_SDPA):
        model = _model(tiny_model_dir, attention).eval()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
            generated = model.generate(
                input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False
            )
        outs[attention] = (logits, generated)
    assert torch.allclose(outs["sdpa"][0], outs[PACKED_SDPA][0], atol=ATOL)
    assert torch.equal(outs["sdpa"][1], outs[PACKED_SDPA][1])


def test_training_load_uses_it_by_default(tiny_model_dir):
    folder = str(tiny_model_dir)
    assert load_model(ModelArgs(model_name_or_path=folder)).config._attn_implementation == (
        PACKED_SDPA
    )
    for flash_attn in ("sdpa", "disabled"):
        args = ModelArgs(model_name_or_path=folder, flash_attn=flash_attn)
        assert load_model(args).config._attn_implementation != PACKED_SDPA
    inference = load_model(ModelArgs(model_name_or_path=folder), for_training=False)
    assert inference.config._attn_implementation == "sdpa"
