"""LLaMA Pro: `tuneforge expand` inserts zero-output copies of decoder layers, and
``use_llama_pro`` trains those copies only (freeze, or LoRA on them).

The 4-layer tiny Llama expanded by 2 has 6 layers: 0 1 [2] 3 4 [5], the copies in brackets
(of layers 1 and 3 of the original).
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tuneforge.cli import main
from tuneforge.config import load_config
from tuneforge.config.schema import FinetuneArgs, ModelArgs
from tuneforge.errors import ConfigError, OutputError, UserError
from tuneforge.models import apply_finetuning, load_model
from tuneforge.models.expand import expand_blocks

INSERTED = (2, 5)
COPIED_FROM = {2: 1, 5: 3}  # inserted layer -> the original layer it copies


@pytest.fixture(scope="module")
def four_layers(tmp_path_factory, tokenizer, make_tiny_model):
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama-4"), tokenizer, layers=4)


@pytest.fixture(scope="module")
def expanded(tmp_path_factory, four_layers):
    return expand_blocks(four_layers, tmp_path_factory.mktemp("pro") / "model", 2).output_dir


def _layer(name: str) -> int | None:
    parts = name.split(".")
    return int(parts[parts.index("layers") + 1]) if "layers" in parts else None


def _one_line(kind: type[Exception], call, *args, **kwargs) -> str:
    with pytest.raises(kind) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_the_expanded_model_computes_what_the_original_did(four_layers, expanded):
    original = AutoModelForCausalLM.from_pretrained(four_layers).eval()
    grown = AutoModelForCausalLM.from_pretrained(expanded).eval()
    assert grown.config.num_hidden_layers == 6 and len(grown.model.layers) == 6
    ids = torch.tensor([[1, 15, 27, 300, 42, 7]])
    with torch.no_grad():
        torch.testing.assert_close(grown(ids).logits, original(ids).logits, atol=1e-5, rtol=0)
        # Step by step through the KV cache: each copy has a cache slot of its own.
        before = original(ids[:, :4], use_cache=True)
        after = grown(ids[:, :4], use_cache=True)
        next_before = original(ids[:, 4:], cache=before.cache).logits
        next_after = grown(ids[:, 4:], cache=after.cache).logits
    torch.testing.assert_close(next_after, next_before, atol=1e-5, rtol=0)


def test_each_copy_is_its_layer_with_zero_output_projections(four_layers, expanded):
    original = dict(AutoModelForCausalLM.from_pretrained(four_layers).named_parameters())
    grown = AutoModelForCausalLM.from_pretrained(expanded)
    for new, old in COPIED_FROM.items():
        for name, param in grown.model.layers[new].named_parameters():
            source = original[f"model.layers.{old}.{name}"]
            if name.split(".")[1] in ("o_proj", "down_proj"):
                assert not param.any(), name
            else:
                assert torch.equal(param, source), name
    assert grown.get_output_embeddings().weight is grown.get_input_embeddings().weight
    assert len(AutoTokenizer.from_pretrained(expanded)) == grown.config.vocab_size


def test_num_expand_must_divide_the_layer_count(four_layers, tmp_path):
    message = _one_line(UserError, expand_blocks, four_layers, tmp_path / "out", 3)
    assert message == "num_expand=3: must divide the model's 4 decoder layers (one of 1, 2, 4)"
    assert not (tmp_path / "out").exists()


def test_a_folder_of_the_users_is_not_written_into(four_layers, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    message = _one_line(OutputError, expand_blocks, four_layers, tmp_path / "mine", 2)
    assert "output_dir" in message and "not empty (notes.txt)" in message
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_an_empty_folder_receives_the_model(four_layers, tmp_path):
    (tmp_path / "empty").mkdir()
    result = expand_blocks(four_layers, tmp_path / "empty", 4)
    assert (result.layers_before, result.layers_after, result.inserted) == (4, 8, (1, 3, 5, 7))
    assert (tmp_path / "empty" / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]  # no partial folder left


def _apply(folder, **finetune):
    model_args = ModelArgs(model_name_or_path=str(folder))
    return apply_finetuning(load_model(model_args), FinetuneArgs(**finetune), model_args)


def test_freeze_trains_only_the_inserted_layers(expanded):
    model = _apply(
        expanded, finetuning_type="freeze", use_llama_pro=True, freeze_trainable_layers=2
    )
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {_layer(name) for name in trainable} == set(INSERTED)
    per_layer = {name for name, _ in model.model.layers[2].named_parameters()}
    assert trainable == {f"model.layers.{i}.{name}" for i in INSERTED for name in per_layer}


def test_the_first_step_moves_only_the_inserted_layers(expanded):
    """Their output projections are zero, so only those get a gradient at first (like
    LoRA's zero B); once they move, the rest of the copy learns too."""
    model = _apply(
        expanded, finetuning_type="freeze", use_llama_pro=True, freeze_trainable_layers=2
    )
    ids = torch.tensor([[1, 15, 27, 300, 42, 7]])
    model(ids, labels=ids).loss.backward()
    moved = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.any()}
    assert moved and {_layer(name) for name in moved} == set(INSERTED)
    assert {name.split(".")[4] for name in moved} == {"o_proj", "down_proj"}


def test_lora_goes_on_the_inserted_layers_only(expanded):
    model = _apply(expanded, finetuning_type="lora", use_llama_pro=True, freeze_trainable_layers=2)
    adapted = {name for name, module in model.named_modules() if hasattr(module, "lora_A")}
    assert {_layer(name) for name in adapted} == set(INSERTED)
    linear = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert {name.rpartition(".")[2] for name in adapted} == linear
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name and _layer(name) in INSERTED for name in trainable)


@pytest.mark.parametrize("kind", ["freeze", "lora"])
def test_a_layer_count_that_does_not_match_is_one_line(expanded, kind):
    settings = {"finetuning_type": kind, "use_llama_pro": True, "freeze_trainable_layers": 4}
    message = _one_line(ConfigError, _apply, expanded, **settings)
    assert message.startswith("use_llama_pro: freeze_trainable_layers=4 must be the number")
    assert "6 decoder layers" in message


def _problems(**keys) -> dict[str | None, str]:
    with pytest.raises(ConfigError) as caught:
        load_config({"dataset": "identity", "use_llama_pro": True, **keys})
    return {problem.key: problem.message for problem in caught.value.problems}


def test_the_config_needs_freeze_or_lora_and_a_positive_layer_count():
    assert "needs finetuning_type freeze or lora (it is full)" in _problems(
        finetuning_type="full"
    ).get("use_llama_pro", "")
    assert "1 or more" in _problems(finetuning_type="freeze", freeze_trainable_layers=-2).get(
        "freeze_trainable_layers", ""
    )
    load_config({"dataset": "identity", "use_llama_pro": True, "finetuning_type": "lora"})


def test_the_expand_command(four_layers, tmp_path, capsys):
    out = tmp_path / "pro"
    assert (
        main(["-q", "expand", "--model", str(four_layers), "--num-expand", "2", "--out", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "(4 -> 6 layers, new: 2, 5)" in printed and "freeze_trainable_layers: 2" in printed
    assert AutoModelForCausalLM.from_pretrained(out).config.num_hidden_layers == 6


def test_the_expand_command_refuses_a_bad_num_expand_in_one_line(four_layers, tmp_path, capsys):
    code = main(
        ["expand", "--model", str(four_layers), "--num-expand", "3", "--out", str(tmp_path / "x")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.splitlines() == [
        "tuneforge: error: num_expand=3: must divide the model's 4 decoder layers (one of 1, 2, 4)"
    ]
