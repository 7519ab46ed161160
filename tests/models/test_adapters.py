"""Which parameters train, for lora / rslora / dora / freeze / full, and continuing an adapter.

The tiny Llama (hidden 32, MLP 64, 4 heads of 8, 2 key/value heads) has per decoder layer
the linear layers q 32->32, k 32->16, v 32->16, o 32->32, gate 32->64, up 32->64, down 64->32.
"""

from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from tuneforge.config.schema import FinetuneArgs, ModelArgs
from tuneforge.errors import ConfigError, ModelError
from tuneforge.models import apply_finetuning, load_model, prepare_for_training, trainable_summary

# LoRA r=8 adds r x (in + out) per linear layer: 512+384+384+512+768+768+768 per layer.
LORA_R8_ALL_LINEAR = 2 * 4096
# DoRA adds one magnitude per output feature: 32+16+16+32+64+64+32 per layer.
DORA_MAGNITUDES = 2 * 256


@pytest.fixture(scope="module")
def four_layer_dir(tmp_path_factory, tokenizer, make_tiny_model):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama-4"), tokenizer, layers=4)


def _model(folder) -> torch.nn.Module:
    return load_model(ModelArgs(model_name_or_path=str(folder)))


def _apply(folder, adapter: str | None = None, **finetune: object) -> torch.nn.Module:
    model_args = ModelArgs(model_name_or_path=str(folder), adapter_name_or_path=adapter)
    return apply_finetuning(_model(folder), FinetuneArgs(**finetune), model_args)


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _trainable_names(model: torch.nn.Module) -> set[str]:
    return {name for name, p in model.named_parameters() if p.requires_grad}


def _one_line_error(kind: type[Exception], call, *args, **kwargs) -> str:
    with pytest.raises(kind) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_lora_all_targets_every_linear_layer_but_the_output_head(tiny_model_dir):
    base_linear = {
        name
        for name, module in _model(tiny_model_dir).named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    model = _apply(tiny_model_dir)
    wrapped = {
        name.removeprefix("base_model.model.")
        for name, module in model.named_modules()
        if hasattr(module, "lora_A")
    }
    assert wrapped == base_linear - {"lm_head"}
    assert len(wrapped) == 14
    assert _trainable(model) == LORA_R8_ALL_LINEAR
    assert all("lora_" in name for name in _trainable_names(model))


def test_lora_named_targets_only(tiny_model_dir):
    model = _apply(tiny_model_dir, lora_target="q_proj,v_proj")
    assert _trainable(model) == 2 * (512 + 384)


@pytest.mark.parametrize(("rslora", "scaling"), [(False, 16 / 4), (True, 16 / math.sqrt(4))])
def test_rslora_changes_the_scaling_not_the_parameter_count(tiny_model_dir, rslora, scaling):
    model = _apply(tiny_model_dir, lora_rank=4, lora_alpha=16, use_rslora=rslora)
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert q_proj.scaling["default"] == pytest.approx(scaling)
    assert _trainable(model) == LORA_R8_ALL_LINEAR // 2


def test_lora_alpha_defaults_to_twice_the_rank(tiny_model_dir):
    model = _apply(tiny_model_dir, lora_rank=4)
    assert model.base_model.model.model.layers[0].mlp.down_proj.scaling["default"] == 2.0


def test_dora_adds_trainable_magnitude_vectors(tiny_model_dir):
    model = _apply(tiny_model_dir, use_dora=True)
    magnitudes = [name for name in _trainable_names(model) if "lora_magnitude_vector" in name]
    assert len(magnitudes) == 14
    assert _trainable(model) == LORA_R8_ALL_LINEAR + DORA_MAGNITUDES


def test_additional_target_trains_a_full_copy(tiny_model_dir):
    model = _apply(tiny_model_dir, lora_target="q_proj", additional_target="norm")
    assert _trainable(model) == 2 * 512 + 32
    assert any("norm.modules_to_save" in name for name in _trainable_names(model))


@pytest.mark.parametrize(
    ("finetune", "expected"),
    [
        (
            {"lora_target": "q_prj"},
            "lora_target: no module named 'q_prj' in this model; valid: all, "
            "down_proj, embed_tokens, gate_proj, k_proj, lm_head, o_proj, "
            "q_proj, up_proj, v_proj",
        ),
        ({"lora_target": "all,q_proj"}, "lora_target: 'all' already covers every linear layer"),
        ({"additional_target": "embeddings"}, "additional_target: no module named 'embeddings'"),
    ],
)
def test_bad_lora_names_are_one_line_errors(tiny_model_dir, finetune, expected):
    assert expected in _one_line_error(ConfigError, _apply, tiny_model_dir, **finetune)


@pytest.mark.parametrize(
    ("layers", "modules", "trained"),
    [
        (2, "all", ["layers.2.", "layers.3."]),
        (-1, "all", ["layers.0."]),
        (2, "mlp", ["layers.2.mlp.", "layers.3.mlp."]),
        (
            -2,
            "self_attn,input_layernorm",
            [
                "layers.0.self_attn.",
                "layers.0.input_layernorm.",
                "layers.1.self_attn.",
                "layers.1.input_layernorm.",
            ],
        ),
    ],
)
def test_freeze_trains_exactly_the_chosen_layers_and_modules(
    four_layer_dir, layers, modules, trained
):
    model = _apply(
        four_layer_dir,
        finetuning_type="freeze",
        freeze_trainable_layers=layers,
        freeze_trainable_modules=modules,
    )
    expected = {
        name
        for name, _ in model.named_parameters()
        if any(f"model.{prefix}" in name for prefix in trained)
    }
    assert expected and _trainable_names(model) == expected


def test_freeze_extra_modules_train_outside_the_layers(four_layer_dir):
    model = _apply(
        four_layer_dir,
        finetuning_type="freeze",
        freeze_trainable_layers=1,
        freeze_trainable_modules="mlp",
        freeze_extra_modules="embed_tokens,norm",
    )
    names = _trainable_names(model)
    assert {"model.embed_tokens.weight", "model.norm.weight"} <= names
    assert names - {"model.embed_tokens.weight", "model.norm.weight"} == {
        "model.layers.3.mlp.gate_proj.weight",
        "model.layers.3.mlp.up_proj.weight",
        "model.layers.3.mlp.down_proj.weight",
    }


@pytest.mark.parametrize(
    ("finetune", "expected"),
    [
        (
            {"freeze_trainable_layers": 5},
            "freeze_trainable_layers=5: the model has 4 decoder layers; "
            "use 1..4 (the last n) or -1..-4 (the first n)",
        ),
        ({"freeze_trainable_layers": -5}, "freeze_trainable_layers=-5: the model has 4 decoder"),
        (
            {"freeze_trainable_modules": "mlp,atention"},
            "freeze_trainable_modules: no module named 'atention' in this model; valid: all, "
            "down_proj, "
            "gate_proj, input_layernorm, k_proj, mlp, o_proj, post_attention_layernorm, q_proj, "
            "self_attn, up_proj, v_proj",
        ),
        (
            {"freeze_extra_modules": "embed"},
            "freeze_extra_modules: no module named 'embed' in this "
            "model; valid: embed_tokens, lm_head, norm",
        ),
    ],
)
def test_bad_freeze_settings_are_one_line_errors(four_layer_dir, finetune, expected):
    message = _one_line_error(
        ConfigError, _apply, four_layer_dir, finetuning_type="freeze", **finetune
    )
    assert message.startswith(expected)


def test_full_trains_every_parameter(tiny_model_dir):
    model = _model(tiny_model_dir)
    model.requires_grad_(False)
    model = apply_finetuning(
        model,
        FinetuneArgs(finetuning_type="full"),
        ModelArgs(model_name_or_path=str(tiny_model_dir)),
    )
    assert _trainable(model) == sum(p.numel() for p in model.parameters())


def test_an_adapter_is_only_continued_by_an_adapter_method(tiny_model_dir, tmp_path):
    message = _one_line_error(
        ConfigError, _apply, tiny_model_dir, adapter=str(tmp_path), finetuning_type="full"
    )
    assert message.startswith("adapter_name_or_path needs finetuning_type=lora or oft (it is full)")


def _saved_adapter(folder, target) -> dict[str, torch.Tensor]:
    """Train-like LoRA weights (B is zero when fresh) saved to `target`; returns them by name."""
    model = _apply(folder, lora_rank=4)
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    model.save_pretrained(target)
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def test_continuing_an_adapter_restores_its_weights_and_trains_them(tiny_model_dir, tmp_path):
    saved = _saved_adapter(tiny_model_dir, tmp_path / "adapter")
    model = _apply(tiny_model_dir, adapter=str(tmp_path / "adapter"), lora_rank=16)
    restored = {name: p for name, p in model.named_parameters() if "lora_" in name}
    assert restored.keys() == saved.keys()
    assert all(torch.equal(restored[name], saved[name]) for name in saved)
    assert _trainable_names(model) == set(saved)

    loss = model(input_ids=torch.tensor([[1, 5, 9, 2]]), labels=torch.tensor([[1, 5, 9, 2]])).loss
    loss.backward()
    assert all(restored[name].grad is not None for name in saved)


def test_adapter_of_a_model_with_other_shapes_is_refused(tiny_model_dir, tmp_path):
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.update({"hidden_size": 48, "head_dim": 12})
    other = tmp_path / "wider"
    LlamaForCausalLM(LlamaConfig(**config.to_dict())).save_pretrained(other)
    _saved_adapter(other, tmp_path / "adapter")
    message = _one_line_error(ModelError, _apply, tiny_model_dir, adapter=str(tmp_path / "adapter"))
    assert message.startswith(
        f"adapter_name_or_path '{tmp_path / 'adapter'}': made for a different model ("
    )
    assert message.endswith(
        "(model.layers.0.mlp.down_proj has 32 outputs here, the adapter expects 48)"
    )


def test_adapter_of_a_deeper_model_is_refused(four_layer_dir, tiny_model_dir, tmp_path):
    _saved_adapter(four_layer_dir, tmp_path / "adapter")
    message = _one_line_error(ModelError, _apply, tiny_model_dir, adapter=str(tmp_path / "adapter"))
    assert "this model has no model.layers.2." in message


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda folder: None, "no such folder"),
        (lambda folder: folder.mkdir(), "no adapter_config.json"),
    ],
)
def test_adapter_folder_must_hold_an_adapter(tiny_model_dir, tmp_path, make, expected):
    make(tmp_path / "adapter")
    message = _one_line_error(ModelError, _apply, tiny_model_dir, adapter=str(tmp_path / "adapter"))
    assert expected in message


def test_gradient_checkpointing_gives_the_same_adapter_gradients(tiny_model_dir):
    model = _apply(tiny_model_dir)
    model.train()
    batch = torch.tensor([[1, 5, 9, 2, 7, 3]])

    def lora_b_grads() -> list[torch.Tensor]:
        model.zero_grad()
        model(input_ids=batch, labels=batch).loss.backward()
        return [p.grad.clone() for name, p in model.named_parameters() if "lora_B" in name]

    plain = lora_b_grads()
    model = prepare_for_training(model, gradient_checkpointing=True)
    assert model.config.use_cache is False
    assert model.base_model.model.model.gradient_checkpointing is True
    checkpointed = lora_b_grads()
    assert len(plain) == 14 and all(g.abs().sum() > 0 for g in plain)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(plain, checkpointed, strict=True))


def test_summary_of_lora_on_the_default_model_architecture(default_model_dir):
    config = AutoConfig.from_pretrained(default_model_dir)
    with torch.device("meta"):  # the real shapes, no weights: counting needs no memory
        model = AutoModelForCausalLM.from_config(config)
    model = apply_finetuning(model, FinetuneArgs(lora_target="q_proj,v_proj"), ModelArgs())
    assert trainable_summary(model) == "trainable params: 460,800 / 134,975,808 (0.34%)"


def test_print_param_status_logs_what_each_parameter_does(tiny_model_dir, caplog):
    caplog.set_level("INFO", logger="tuneforge")
    model = _apply(
        tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=1, print_param_status=True
    )
    lines = {
        r.getMessage().split(":")[0]: r.getMessage()
        for r in caplog.records
        if r.getMessage().endswith(("trainable", "frozen"))
    }
    assert set(lines) == {name for name, _ in model.named_parameters()}
    for name, p in model.named_parameters():
        assert lines[name].endswith("trainable" if p.requires_grad else "frozen")
        assert f"{tuple(p.shape)} float32 cpu" in lines[name]
    assert any(v.endswith("trainable") for v in lines.values())
    assert any(v.endswith("frozen") for v in lines.values())
    caplog.clear()
    _apply(tiny_model_dir, finetuning_type="freeze", freeze_trainable_layers=1)
    assert not any(r.getMessage().endswith("frozen") for r in caplog.records)
