"""LLaMA-Factory's optimizer keys (LoRA+, GaLore, APOLLO, BAdam, Adam-mini, Muon): each builds
the optimizer of the package that owns it, and that optimizer does what it is for."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers import AutoModelForCausalLM, TrainingArguments

import tuneforge
from tuneforge.config.load import load_config
from tuneforge.errors import ConfigError
from tuneforge.models.adapters import apply_finetuning
from tuneforge.training import optimizers
from tuneforge.training.optimizers import OptimizerPair, custom_optimizer


def built(tiny_model_dir, tmp_path, **keys):
    """The tiny model prepared as the config says, and the optimizer the keys choose."""
    cfg = load_config({"model_name_or_path": str(tiny_model_dir), "dataset": "x", **keys})
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = apply_finetuning(model, cfg.finetune, cfg.model)
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.1)
    decay = {name for name, p in model.named_parameters() if p.ndim == 2}
    return model, custom_optimizer(cfg.optimizer, model, args, decay)


def one_step(model, optimizer) -> dict[str, torch.Tensor]:
    """The parameters before a step on a random batch; the step is taken."""
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    ids = torch.randint(0, 100, (2, 12))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    return before


def changed(model, before) -> set[str]:
    return {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}


def test_loraplus_gives_b_matrices_their_own_learning_rate(tiny_model_dir, tmp_path):
    model, optimizer = built(tiny_model_dir, tmp_path, loraplus_lr_ratio=16)
    lrs = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            lrs[id(p)] = group["lr"]
    by_name = {name: lrs[id(p)] for name, p in model.named_parameters() if p.requires_grad}
    assert {lr for name, lr in by_name.items() if "lora_A" in name} == {1e-3}
    assert [lr for name, lr in by_name.items() if "lora_B" in name] == pytest.approx([16e-3] * 14)


def test_badam_updates_one_decoder_layer_at_a_time(tiny_model_dir, tmp_path):
    model, optimizer = built(
        tiny_model_dir,
        tmp_path,
        finetuning_type="full",
        use_badam=True,
        badam_switch_mode="ascending",
    )
    before = one_step(model, optimizer)
    moved = changed(model, before)
    assert moved and all(".layers.0." in name for name in moved)
    assert not any(".layers.1." in name for name, p in model.named_parameters() if p.requires_grad)


def test_adam_mini_keeps_one_second_moment_per_block(tiny_model_dir, tmp_path):
    model, optimizer = built(tiny_model_dir, tmp_path, finetuning_type="full", use_adam_mini=True)
    one_step(model, optimizer)
    weight = model.model.layers[0].mlp.up_proj.weight
    second_moment = optimizer.state[weight]["vmean"]
    assert second_moment.numel() == weight.shape[0]  # one per output neuron; AdamW: per weight


def test_muon_takes_the_layer_matrices_and_adamw_the_rest(tiny_model_dir, tmp_path):
    model, optimizer = built(tiny_model_dir, tmp_path, finetuning_type="full", use_muon=True)
    assert isinstance(optimizer, OptimizerPair)
    muon, adamw = optimizer.pair
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    before = one_step(model, optimizer)
    assert changed(model, before) == set(before)  # every weight moved, under one of the two
    q = model.model.layers[0].self_attn.q_proj.weight
    assert "momentum_buffer" in muon.state[q] and q not in adamw.state
    embed = model.model.embed_tokens.weight
    assert "exp_avg_sq" in adamw.state[embed] and embed not in muon.state
    # The schedule sets the pair's group lrs: the inner optimizers must see them.
    for group in optimizer.param_groups:
        group["lr"] = 0.5
    assert {g["lr"] for opt in optimizer.pair for g in opt.param_groups} == {0.5}
    saved = optimizer.state_dict()
    _, again = built(tiny_model_dir, tmp_path, finetuning_type="full", use_muon=True)
    again.load_state_dict(saved)
    assert again.pair[1].param_groups[0]["lr"] == 0.5


@pytest.mark.parametrize(
    ("keys", "log_line", "state_key"),
    [
        ({"use_galore": True, "galore_rank": 4}, "galore_adamw on", "projector"),
        ({"use_apollo": True, "apollo_rank": 4}, "apollo_adamw on", "projector"),
        ({"use_muon": True}, "Muon on", None),
    ],
)
def test_optimizer_keys_train_through_tuneforge(base_config, caplog, keys, log_line, state_key):
    config = {
        **base_config,
        "finetuning_type": "full",
        "max_steps": 2,
        "save_steps": 2,
        "learning_rate": 1e-3,
        **keys,
    }
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        result = tuneforge.train(config)
    assert log_line in caplog.text
    assert result.metrics["train_loss"] == pytest.approx(result.metrics["train_loss"])  # not NaN
    if state_key:
        state = torch.load(result.output_dir / "checkpoint-2" / "optimizer.pt", weights_only=False)
        projected = [entry for entry in state["state"].values() if state_key in entry]
        assert len(projected) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers


def test_a_missing_optimizer_package_names_the_extra(monkeypatch, tiny_model_dir):
    cfg = load_config(
        {"model_name_or_path": str(tiny_model_dir), "dataset": "x", "finetuning_type": "full"}
        | {"use_galore": True}
    )
    monkeypatch.setattr(optimizers.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'tuneforge\[galore\]'"):
        optimizers.check_installed(cfg.optimizer)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"use_galore": True, "use_muon": True}, "each choose the optimizer"),
        ({"use_galore": True}, "finetuning_type=full or freeze"),
        ({"use_badam": True, "finetuning_type": "freeze"}, "finetuning_type=full"),
        ({"loraplus_lr_ratio": 16, "finetuning_type": "full"}, "needs finetuning_type=lora"),
        ({"use_muon": True, "optim": "sgd"}, "optim and use_muon"),
        (
            {"use_galore": True, "finetuning_type": "full", "galore_layerwise": True}
            | {"gradient_accumulation_steps": 2},
            "cannot accumulate",
        ),
        ({"badam_switch_interval": 0}, "badam_switch_interval"),
    ],
)
def test_optimizer_key_conflicts_are_one_line_each(keys, message):
    with pytest.raises(ConfigError, match=message):
        load_config({"dataset": "x", **keys})
