"""The memory estimate: the 16 bytes/parameter reference, each component's arithmetic, the
activation inventory against what autograd really saves, and the refusal before training."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
import torch

import tuneforge
from tuneforge.cli import main
from tuneforge.config import replace
from tuneforge.errors import ConfigError, ModelError
from tuneforge.models import Hardware, apply_finetuning, load_model, prepare_for_training
from tuneforge.planning.memory import FP32, LOSS_TENSORS, estimate, workload
from tuneforge.planning.report import make_plan
from tuneforge.planning.shape import describe, model_shape
from tuneforge.training.fused_loss import CHUNK_ROWS

LLAMA3_8B = Path(__file__).resolve().parent.parent / "fixtures" / "llama3-8b"
GPU = Hardware("cuda", True, "test GPU")
CPU_FP32 = Hardware("cpu", False, "test CPU")
CPU_BF16 = Hardware("cpu", True, "test CPU")
# Published Llama-3-8B architecture: 32 layers of 218,112,000 parameters, a final norm, and a
# 128,256 x 4,096 embedding plus an untied output head of the same size.
LLAMA3_8B_PARAMS = 32 * 218_112_000 + 4096 + 2 * 128_256 * 4096


def llama3(**keys):
    return tuneforge.load_config(
        {
            "model_name_or_path": str(LLAMA3_8B),
            "dataset": "any",
            "cutoff_len": 512,
            "per_device_train_batch_size": 1,
            **keys,
        }
    )


def test_full_finetuning_of_llama3_8b_reproduces_16_bytes_per_parameter(device_of):
    device_of(80)
    plan = make_plan(llama3(finetuning_type="full"), with_data=False, hardware=GPU)
    shape, memory = plan.shape, plan.estimate
    assert shape.total_params == LLAMA3_8B_PARAMS == 8_030_261_248
    assert memory.weights == 4 * shape.total_params
    assert memory.gradients == 4 * shape.total_params
    assert memory.optimizer_states == 8 * shape.total_params
    assert memory.static == 16 * shape.total_params  # 128.5 GB
    # The transformer body is the 7B of "7B needs 112 GB"; embeddings and head add 1.05B.
    assert round(16 * shape.body_params / 1e9) == 112
    text = plan.text()
    assert "= 16 B per parameter" in text and "111.7 GB (a 7B model: 7e9 x 16 B = 112 GB)" in text
    assert "does NOT fit" in text and "128.48 GB = 16.0 B per parameter" in text


def test_changes_that_fit_are_listed_with_their_new_totals(device_of):
    device_of(24)
    plan = make_plan(
        llama3(finetuning_type="full", per_device_train_batch_size=4), with_data=False, hardware=GPU
    )
    assert not plan.fits
    by_change = {fix.change: fix.estimate.peak for fix in plan.fixes}
    assert by_change["finetuning_type=lora"] < plan.estimate.peak / 2
    assert by_change["finetuning_type=lora quantization_bit=4"] < by_change["finetuning_type=lora"]
    # Full fine-tuning peaks at the update (gradients + AdamW's step), not in the forward pass.
    assert by_change["gradient_checkpointing=True"] == plan.estimate.peak
    assert by_change["optim=adamw_bnb_8bit"] < plan.estimate.peak - 6 * plan.shape.total_params
    assert any(peak <= 24e9 for peak in by_change.values())
    assert "finetuning_type=lora quantization_bit=4" in plan.text()


def test_four_bit_weights_cost_about_half_a_byte_per_linear_weight():
    cfg = llama3(quantization_bit=4)
    shape = model_shape(cfg)
    memory = estimate(shape, workload(cfg, GPU))
    linear = sum(lin.params for layer in shape.layers for lin in layer.linears)
    assert linear == 32 * 218_103_808
    others = shape.total_params - linear
    assert memory.weights == pytest.approx(4 * others + 0.5157 * linear, rel=1e-3)
    # Only the unquantised output head and the adapters get bf16 copies.
    assert memory.weight_copies == 2 * (128_256 * 4096 + shape.trainable_params)


def test_the_fused_loss_holds_one_chunk_of_logits_not_all_of_them(tiny_model_dir):
    cfg = tuneforge.load_config(
        {
            "model_name_or_path": str(tiny_model_dir),
            "dataset": "x",
            "cutoff_len": 512,
            "per_device_train_batch_size": 4,
        }
    )
    shape = model_shape(cfg)
    fused = estimate(shape, workload(cfg, CPU_FP32)).logits
    plain = estimate(shape, workload(replace(cfg, fused_loss=False), CPU_FP32)).logits
    assert plain == LOSS_TENSORS * FP32 * 2048 * shape.vocab_size
    assert fused == 2 * FP32 * CHUNK_ROWS * shape.vocab_size + 2 * FP32 * 2048 * shape.hidden_size
    full = replace(cfg, finetuning_type="full")  # the head trains: its gradient buffer too
    head = FP32 * shape.vocab_size * shape.hidden_size
    assert estimate(model_shape(full), workload(full, CPU_FP32)).logits == fused + head


def test_component_arithmetic_on_a_tiny_config(tiny_model_dir):
    cfg = tuneforge.load_config(
        {
            "model_name_or_path": str(tiny_model_dir),
            "dataset": "x",
            "finetuning_type": "full",
            "cutoff_len": 100,
            "per_device_train_batch_size": 3,
            "optim": "sgd",
            "fused_loss": False,
        }
    )
    shape = model_shape(cfg)
    memory = estimate(shape, workload(cfg, CPU_FP32))
    assert shape.trainable_params == shape.total_params
    assert memory.weights == memory.gradients == FP32 * shape.total_params
    assert memory.optimizer_states == 0 and memory.weight_copies == 0
    assert memory.logits == LOSS_TENSORS * FP32 * 300 * shape.vocab_size
    adam = estimate(shape, workload(replace(cfg, optim="adamw_torch"), CPU_FP32))
    assert adam.optimizer_states == 2 * FP32 * shape.total_params
    assert adam.optimizer_step == 2 * FP32 * shape.largest_trainable  # tensor by tensor on a CPU
    # On a CPU freed memory stays resident: the update comes on top of the forward pass.
    assert memory.heap_retention == round(0.7 * memory.activations)
    assert memory.peak == (
        memory.weights
        + memory.optimizer_states
        + memory.runtime
        + memory.forward_backward
        + max(memory.heap_retention, memory.update)
    )
    on_gpu = estimate(shape, workload(cfg, Hardware("cuda", False, "GPU")))
    assert on_gpu.heap_retention == 0 and on_gpu.peak == (
        on_gpu.weights
        + on_gpu.optimizer_states
        + on_gpu.runtime
        + max(on_gpu.forward_backward, on_gpu.update)
    )


def test_lora_trains_what_peft_trains_and_checkpointing_keeps_one_input_per_layer(tiny_model_dir):
    keys = {
        "model_name_or_path": str(tiny_model_dir),
        "dataset": "x",
        "lora_rank": 4,
        "cutoff_len": 128,
    }
    cfg = tuneforge.load_config(keys)
    shape = model_shape(cfg)
    d, layers = shape.hidden_size, shape.num_layers  # kv width d/2, intermediate 2d
    q_o, k_v, mlp = 2 * (d + d), 2 * (d + d // 2), 3 * (d + 2 * d)
    assert shape.trainable_params == layers * 4 * (q_o + k_v + mlp)  # r x (in + out) each
    plain = estimate(shape, workload(cfg, CPU_FP32))
    checkpointed = estimate(
        shape, workload(tuneforge.load_config({**keys, "gradient_checkpointing": True}), CPU_FP32)
    )
    assert checkpointed.activations < plain.activations


def _saved_bytes(model: torch.nn.Module, batch: int, seq: int, vocab: int, bf16: bool) -> int:
    """Bytes of the tensors autograd saves for backward (parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    ids = torch.randint(0, vocab, (batch, seq))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with autocast, torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(input_ids=ids, labels=ids, attention_mask=torch.ones_like(ids))
    return sum(seen.values())


@pytest.fixture(scope="module")
def small_vocab_model(tmp_path_factory):
    """A 3-layer Llama with a 96-word vocabulary, so the layers' share is what is measured."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("small-vocab")
    LlamaForCausalLM(
        LlamaConfig(
            vocab_size=96,
            hidden_size=48,
            intermediate_size=80,
            num_hidden_layers=3,
            num_attention_heads=6,
            num_key_value_heads=2,
            head_dim=8,
            tie_word_embeddings=False,
        )
    ).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["lora", "full", "freeze"])
@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("attention", ["auto", "disabled"], ids=["sdpa", "eager"])
def test_activation_inventory_matches_what_autograd_saves(small_vocab_model, kind, bf16, attention):
    cfg = tuneforge.load_config(
        {
            "model_name_or_path": str(small_vocab_model),
            "dataset": "x",
            "finetuning_type": kind,
            "freeze_trainable_layers": 1,
            "flash_attn": attention,
            "bf16": bf16,
            "cutoff_len": 16,
        }
    )
    model = apply_finetuning(load_model(cfg.model), cfg.finetune, cfg.model)
    prepare_for_training(model, gradient_checkpointing=False)
    model.train()
    small, large = (_saved_bytes(model, batch, 16, 96, bf16) for batch in (1, 3))
    measured_per_token = (large - small) / 32
    measured_constant = small - 16 * measured_per_token

    shape = describe(model, model.config, "small")
    work = workload(cfg, CPU_BF16 if bf16 else CPU_FP32)
    memory = estimate(shape, work)
    saved_log_softmax = FP32 * shape.output_size  # part of `logits`, also saved by autograd
    assert memory.activations / work.tokens + saved_log_softmax == pytest.approx(
        measured_per_token, rel=0.005
    )
    # Autocast's weight copies; the rest of the constant is RoPE's cos/sin (about 1 KB).
    assert memory.weight_copies == pytest.approx(
        measured_constant, abs=0.02 * measured_constant + 1100
    )


def test_train_refuses_a_run_that_will_not_fit_unless_forced(tiny_config, device_of, caplog):
    device_of(0.15)
    with pytest.raises(ConfigError, match=r"will not fit: estimated peak .* try "):
        tuneforge.train({**tiny_config, "max_steps": 1})
    result = tuneforge.train({**tiny_config, "max_steps": 1}, force=True)
    assert (result.output_dir / "adapter_model.safetensors").is_file()
    assert "training anyway (forced)" in caplog.text


def test_cli_plan_prints_the_breakdown_and_bad_inputs_are_one_line(tmp_path, capsys, qa_dir):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"model_name_or_path: {LLAMA3_8B}\ndataset: qa\ndataset_dir: {qa_dir}\n"
        f"finetuning_type: full\n"
    )
    assert main(["plan", str(config), "--no-data"]) == 0
    out = capsys.readouterr().out
    assert "8.0B parameters" in out and "optimizer states" in out and "Advice:" in out

    empty = tmp_path / "no-config"
    empty.mkdir()
    assert main(["plan", str(config), f"model_name_or_path={empty}", "--no-data"]) == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"tuneforge: error: model_name_or_path '{empty}': folder has no config.json; "
        f"expected a Hugging Face model folder (config.json, weights, tokenizer)"
    ]
    assert main(["plan", str(config), "optim=adamw_9bit", "--no-data"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "optim='adamw_9bit': allowed: adamw_torch" in err[0]


def test_a_config_json_transformers_cannot_build_is_one_model_error(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "no-such-architecture"}))
    with pytest.raises(ModelError, match="config.json"):
        model_shape(tuneforge.load_config({"model_name_or_path": str(tmp_path), "dataset": "x"}))


def test_every_optimizer_the_config_allows_has_a_memory_rule():
    from typing import get_args

    from tuneforge.config.schema import TrainArgs
    from tuneforge.planning.memory import OPTIMIZERS

    assert set(get_args(TrainArgs.model_fields["optim"].annotation)) == set(OPTIMIZERS)


def test_checkpointing_on_a_cpu_keeps_the_heap_the_recomputed_layers_fill(default_model_dir):
    """With gradient checkpointing glibc's heap still sees every layer's activations (in the
    recompute) while the gradients are made; on a GPU only the live tensors count."""
    cfg = tuneforge.load_config(
        {
            "model_name_or_path": str(default_model_dir),
            "dataset": "x",
            "cutoff_len": 256,
            "per_device_train_batch_size": 4,
        }
    )
    shape = model_shape(cfg)
    plain = estimate(shape, workload(cfg, CPU_FP32))
    recomputed = estimate(shape, workload(replace(cfg, gradient_checkpointing=True), CPU_FP32))
    assert recomputed.activations < plain.activations / 4
    assert recomputed.heap_retention == plain.heap_retention > recomputed.activations
    fixed = recomputed.weights + recomputed.optimizer_states + recomputed.runtime
    # the (LoRA) gradients come on top of the refilled heap, not in its place
    assert recomputed.peak == (
        fixed + recomputed.forward_backward + recomputed.heap_retention + recomputed.gradients
    )
    on_gpu = estimate(shape, workload(replace(cfg, gradient_checkpointing=True), GPU))
    assert on_gpu.heap_retention == 0
