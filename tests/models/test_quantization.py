"""QLoRA loading: 4/8-bit base weights through bitsandbytes (runs on CPUs), merge refusal."""

from __future__ import annotations

import pytest
import torch

from tuneforge.config import FinetuneArgs, ModelArgs
from tuneforge.errors import ModelError
from tuneforge.models import apply_finetuning, is_quantized, load_model, refuse_quantized_merge
from tuneforge.models.quantization import bnb_config, quantized_bytes_per_weight

pytest.importorskip("bitsandbytes")


def test_bytes_per_quantised_weight():
    assert quantized_bytes_per_weight(8) == 1.0
    assert quantized_bytes_per_weight(4, double_quantization=False) == pytest.approx(0.5625)
    assert quantized_bytes_per_weight(4) == pytest.approx(0.5 + 1 / 64 + 4 / (64 * 256))


def test_bnb_config_follows_the_keys():
    assert bnb_config(ModelArgs(), torch.float32) is None
    four = bnb_config(
        ModelArgs(quantization_bit=4, quantization_type="fp4", double_quantization=False),
        torch.bfloat16,
    )
    assert four.load_in_4bit and not four.load_in_8bit
    assert (four.bnb_4bit_quant_type, four.bnb_4bit_use_double_quant) == ("fp4", False)
    assert four.bnb_4bit_compute_dtype == torch.bfloat16
    eight = bnb_config(ModelArgs(quantization_bit=8), torch.float32)
    assert eight.load_in_8bit and not eight.load_in_4bit


@pytest.mark.parametrize("bits", [4, 8])
def test_linear_layers_load_quantised_and_lora_trains_only_adapters(wide_tiny_model_dir, bits):
    args = ModelArgs(model_name_or_path=str(wide_tiny_model_dir), quantization_bit=bits)
    model = load_model(args, dtype=torch.float32)
    q_proj = model.model.layers[0].self_attn.q_proj
    weight = q_proj.weight
    assert type(q_proj).__name__ == ("Linear4bit" if bits == 4 else "Linear8bitLt")
    assert weight.numel() * weight.element_size() == 64 * 64 * bits // 8  # packed storage
    assert is_quantized(model)

    model = apply_finetuning(model, FinetuneArgs(lora_rank=4), args)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    assert model.base_model.model.model.norm.weight.dtype == torch.float32  # k-bit preparation
    ids = torch.randint(0, 1000, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    assert all(
        p.grad is not None and p.grad.abs().sum() > 0
        for name, p in model.named_parameters()
        if "lora_B" in name
    )  # A waits for B


def test_merging_into_quantised_weights_is_refused(wide_tiny_model_dir):
    args = ModelArgs(model_name_or_path=str(wide_tiny_model_dir))
    refuse_quantized_merge(load_model(args))  # unquantised: fine
    quantised = apply_finetuning(
        load_model(ModelArgs(model_name_or_path=str(wide_tiny_model_dir), quantization_bit=4)),
        FinetuneArgs(),
        args,
    )
    with pytest.raises(ModelError) as info:
        refuse_quantized_merge(quantised)
    (line,) = info.value.lines
    assert "cannot merge a LoRA adapter into quantised (4/8-bit) weights" in line
    assert "quantization_bit: null" in line


def stored_bytes(layer: torch.nn.Module) -> int:
    """What a bitsandbytes 4-bit layer really keeps: packed weights plus (nested) scales."""
    state = layer.weight.quant_state
    tensors = [layer.weight, state.absmax]
    if state.state2 is not None:
        tensors += [state.state2.absmax, state.offset]
    return sum(t.numel() * t.element_size() for t in tensors)


@pytest.mark.parametrize("double", [True, False])
def test_bytes_per_weight_matches_what_bitsandbytes_stores(wide_tiny_model_dir, double):
    args = ModelArgs(
        model_name_or_path=str(wide_tiny_model_dir), quantization_bit=4, double_quantization=double
    )
    layers = [m for m in load_model(args).modules() if type(m).__name__ == "Linear4bit"]
    weights = sum(m.in_features * m.out_features for m in layers)
    stored = sum(stored_bytes(m) for m in layers)
    assert stored / weights == pytest.approx(
        quantized_bytes_per_weight(4, double_quantization=double), rel=0.01
    )
