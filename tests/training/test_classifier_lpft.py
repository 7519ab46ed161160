"""Stage cls: the head starts from a linear probe, mean pooling ignores padding, the head has
its own learning rate, and the budget is advised before training."""

from __future__ import annotations

import json
import logging
import random

import pytest
import torch

import tuneforge
from tuneforge.config.schema import CLS_FITTED_HEAD_LR_FACTOR, CLS_FRESH_HEAD_LR_FACTOR
from tuneforge.errors import ConfigError
from tuneforge.models import load_model, load_tokenizer
from tuneforge.models.pooling import MeanPooledScore, running_mean, use_mean_pooling
from tuneforge.training.classifier import ClassifierTrainer, head_learning_rate, head_parameters
from tuneforge.training.runner import no_observers, trainable_model
from tuneforge.training.trainer import build_trainer

WORDS = {
    "positive": ["good", "great", "lovely", "superb", "nice", "happy", "perfect"],
    "negative": ["bad", "awful", "poor", "broken", "ugly", "sad", "terrible"],
}


def word_texts(count: int, seed: int) -> list[dict]:
    """Texts of 2-8 words from one class's word list: a random tiny model's features tell
    them apart, so a probe is far better than chance and a random head is not."""
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        label = "positive" if index % 2 else "negative"
        words = [rng.choice(WORDS[label]) for _ in range(rng.randint(2, 8))]
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture()
def words_config(tiny_model_dir, tmp_path) -> dict:
    folder = tmp_path / "data"
    folder.mkdir()
    for name, rows in (("words", word_texts(120, 1)), ("words_test", word_texts(40, 2))):
        (folder / f"{name}.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    (folder / "dataset_info.json").write_text(
        json.dumps(
            {"words": {"file_name": "words.jsonl"}, "words_test": {"file_name": "words_test.jsonl"}}
        )
    )
    return {
        "model_name_or_path": str(tiny_model_dir),
        "stage": "cls",
        "dataset": "words",
        "eval_dataset": "words_test",
        "dataset_dir": str(folder),
        "cutoff_len": 16,
        "output_dir": str(tmp_path / "cls"),
        "per_device_train_batch_size": 8,
        "per_device_eval_batch_size": 16,
        "eval_strategy": "no",
        "logging_steps": 1,
        "report_to": "none",
        "seed": 3,
        "bf16": False,
    }


@pytest.mark.parametrize("pooling", ["last", "mean"])
def test_the_probe_initialised_head_scores_the_probe_at_step_0(words_config, pooling):
    # One step at a learning rate of 1e-12 leaves the model as it starts: the final
    # validation is the step-0 validation.
    words_config.update(cls_pooling=pooling, max_steps=1, learning_rate=1e-12, cls_head_lr=1e-12)
    metrics = tuneforge.train(words_config).metrics
    assert metrics["eval_probe_accuracy"] >= 0.8  # far from chance: a random head is not
    assert metrics["eval_accuracy"] == pytest.approx(metrics["eval_probe_accuracy"], abs=1 / 40)
    assert metrics["eval_macro_f1"] == pytest.approx(metrics["eval_probe_macro_f1"], abs=0.03)

    words_config.update(cls_head_init="random", output_dir=words_config["output_dir"] + "-r")
    random_head = tuneforge.train(words_config).metrics
    assert "eval_probe_accuracy" not in random_head
    assert random_head["eval_accuracy"] < metrics["eval_accuracy"]


def test_mean_pooling_ignores_padding(tiny_model_dir):
    cfg = tuneforge.load_config(
        {"model_name_or_path": str(tiny_model_dir), "stage": "cls", "do_train": False}
    )
    tokenizer = load_tokenizer(cfg.model)
    tokenizer.padding_side = "right"
    model = load_model(
        cfg.model, for_training=False, labels=["a", "b"], pad_token_id=tokenizer.pad_token_id
    )
    torch.nn.init.normal_(model.score.weight)
    texts = ["a short text", "a much longer text that pads the short one in the batch, a lot"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        last = model(**batch).logits
        use_mean_pooling(model)
        assert isinstance(model.score, MeanPooledScore)
        together = model(**batch).logits
        alone = model(**tokenizer(texts[:1], return_tensors="pt")).logits
        hidden = model.model(**batch).last_hidden_state
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # it was padded
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=1e-5)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    expected = model.score.weight @ ((hidden * mask).sum(1) / mask.sum(1)).T
    torch.testing.assert_close(together, expected.T, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(together, last)  # it reads something else than the last token


def test_running_mean_is_the_mean_of_the_positions_so_far():
    hidden = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3)
    torch.testing.assert_close(running_mean(hidden)[0, 2], hidden[0, :3].mean(0))


def test_a_mean_pooled_lora_classifier_loads_with_plain_peft_as_documented(words_config):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tuneforge.config.load import replace
    from tuneforge.eval.classify import load_classifier

    words_config.update(cls_pooling="mean", max_steps=2, learning_rate=1e-2)
    out = tuneforge.train(words_config).output_dir
    tokenizer = AutoTokenizer.from_pretrained(out)
    base = AutoModelForSequenceClassification.from_pretrained(
        words_config["model_name_or_path"], num_labels=2, pad_token_id=tokenizer.pad_token_id
    )
    plain = PeftModel.from_pretrained(use_mean_pooling(base), out).eval()
    saved = tuneforge.load_config(out / "tuneforge_config.yaml")
    # float32 like the plain model (auto would pick bf16 on a CPU that runs it natively)
    ours = load_classifier(replace(saved, adapter_name_or_path=str(out), infer_dtype="float32"))
    texts = ["good lovely", "awful bad poor sad"]
    expected = ours.probabilities(texts, batch_size=2)
    with torch.inference_mode():
        logits = plain(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(torch.softmax(logits, -1).numpy(), expected, atol=1e-5, rtol=1e-5)


def test_the_head_learning_rate_reaches_the_optimizer(words_config):
    cfg = tuneforge.load_config({**words_config, "learning_rate": 2e-4, "cls_head_lr": 3e-2})
    assert head_learning_rate(cfg) == 3e-2
    default = tuneforge.load_config({**words_config, "learning_rate": 2e-4})
    assert head_learning_rate(default) == pytest.approx(CLS_FITTED_HEAD_LR_FACTOR * 2e-4)
    fresh = tuneforge.load_config(
        {**words_config, "learning_rate": 2e-4, "cls_head_init": "random"}
    )
    assert head_learning_rate(fresh) == pytest.approx(CLS_FRESH_HEAD_LR_FACTOR * 2e-4)

    from tuneforge.models import choose_precision

    precision = choose_precision(cfg.train)
    model = trainable_model(cfg, precision, labels=("negative", "positive"), pad_token_id=2)
    trainer = build_trainer(
        cfg,
        model,
        load_tokenizer(cfg.model),
        _rows(),
        None,
        lambda rows: rows,
        precision,
        no_observers,
        kind=ClassifierTrainer,
        head_lr=3e-2,
    )
    trainer.create_optimizer_and_scheduler(num_training_steps=10)
    head = {id(p) for p in head_parameters(model)}
    assert head  # the score head's trained copy
    by_lr: dict[float, set[int]] = {}
    for group in trainer.optimizer.param_groups:
        by_lr.setdefault(group["lr"], set()).update(id(p) for p in group["params"])
    trained = {id(p) for p in model.parameters() if p.requires_grad}
    assert by_lr[3e-2] == head
    assert by_lr[2e-4] == trained - head  # the adapters, every one of them
    assert len(by_lr) == 2


def _rows():
    import datasets

    return datasets.Dataset.from_dict({"input_ids": [[5, 6, 7]], "labels": [0]})


def test_cls_keys_in_another_stage_are_refused_one_line_each():
    with pytest.raises(ConfigError) as err:
        tuneforge.load_config(
            {"dataset": "x", "stage": "sft", "cls_pooling": "mean", "cls_head_lr": 1e-3}
        )
    assert err.value.lines == [
        "config: cls_pooling applies to stage cls only (the stage is sft)",
        "config: cls_head_lr applies to stage cls only (the stage is sft)",
    ]


def test_the_training_log_advises_the_budget_and_warns_of_truncation(words_config, caplog):
    words_config.update(cutoff_len=4, max_steps=1)
    with caplog.at_level(logging.INFO, logger="tuneforge"):
        tuneforge.train(words_config)
    budget = [r for r in caplog.records if r.getMessage().startswith("Budget: ")]
    cut = next(r for r in budget if r.getMessage().startswith("Budget: cutoff_len 4 "))
    assert cut.levelno == logging.WARNING and "%)" in cut.getMessage()
    epochs = next(r for r in budget if r.getMessage().startswith("Budget: num_train_epochs"))
    assert "(1 steps, 15 per epoch)" in epochs.getMessage() and epochs.levelno == logging.WARNING
    assert any(r.getMessage().startswith("Budget: wall time about ") for r in budget)


def test_cutoff_advice_flags_more_than_a_fifth_cut():
    from tuneforge.data.lengths import Lengths
    from tuneforge.planning.advice import classifier_cutoff

    lengths = Lengths(tuple([10] * 79 + [100] * 21))
    flagged = classifier_cutoff(64, lengths)
    assert not flagged.ok and flagged.value == "64 (cuts 21 of 100 texts, 21%)"
    assert flagged.advised == "128 (p95, rounded up)"
    assert classifier_cutoff(64, Lengths(tuple([10] * 80 + [100] * 20))).ok


def test_padded_tokens_count_each_batch_at_its_longest_text():
    from tuneforge.planning.budget import padded_tokens

    assert padded_tokens([1, 10, 2, 3], 2, grouped=True, seed=0) == 2 * 2 + 2 * 10
    assert padded_tokens([1, 10, 2, 3], 4, grouped=False, seed=0) == 4 * 10


def test_plan_replaces_the_generic_epochs_row_for_a_classifier(words_config):
    plan = tuneforge.plan({**words_config, "num_train_epochs": 1})
    rows = {row.setting: row for row in plan.advice}
    assert [row.setting for row in plan.advice].count("num_train_epochs") == 1
    assert rows["num_train_epochs"].value == "1 (15 steps, 15 per epoch)"
    assert rows["num_train_epochs"].advised == "4 (>= 50 steps)" and not rows["num_train_epochs"].ok
    assert rows["cutoff_len"].ok and rows["wall time"].value.startswith("about ")


def test_the_time_estimate_counts_training_and_forward_passes_at_their_own_speeds(words_config):
    from tuneforge.config.load import load_config, replace
    from tuneforge.planning.budget import FORWARD_EFFICIENCY, STEP_EFFICIENCY, classifier_time
    from tuneforge.planning.shape import model_shape

    cfg = load_config({**words_config, "num_train_epochs": 1, "group_by_length": True})
    shape = model_shape(cfg)
    lengths = [4, 8, 12, 16] * 30
    one = classifier_time(cfg, shape, lengths, samples=120, speed=1e9)
    two = classifier_time(replace(cfg, num_train_epochs=2), shape, lengths, samples=120, speed=1e9)
    assert two.train == pytest.approx(2 * one.train) and two.probe == pytest.approx(one.probe)
    assert classifier_time(cfg, shape, lengths, samples=120, speed=2e9).train == pytest.approx(
        one.train / 2
    )
    # The probe reads every text once, forward only, at the forward passes' share of speed.
    forward = 2 * shape.body_params + 4 * shape.num_layers * shape.hidden_size * 10
    assert one.probe == pytest.approx(120 * 10 * forward / (1e9 * FORWARD_EFFICIENCY))
    assert FORWARD_EFFICIENCY < STEP_EFFICIENCY
    random_head = classifier_time(
        replace(cfg, cls_head_init="random"), shape, lengths, samples=120, speed=1e9
    )
    assert random_head.probe == 0 and random_head.train == pytest.approx(one.train)
