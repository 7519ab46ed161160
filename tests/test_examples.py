"""The quick-start demo's config and data (what `make demo` trains on), checked without a model.

The demo itself trains for a minute or more; these checks catch in a second the mistakes that
would make it fail or measure the wrong thing: a dataset that is not mixed in, a broken data
file, a language missing, or general data that copies the forgetting check's probe.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
from pathlib import Path

import pytest

import tuneforge
from tuneforge.monitor.forgetting import is_correct, load_probe

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
DATA = EXAMPLES / "data"
ALPACA_KEYS = {"instruction", "input", "output"}
SIMILAR = 0.6  # difflib ratio above which two questions count as the same question reworded


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def is_chinese(text: str) -> bool:
    return re.search(r"[\u4e00-\u9fff]", text) is not None


def normalised(question: str) -> str:
    return re.sub(r"[\W_]+", " ", question.casefold()).strip()


@pytest.fixture(scope="module")
def general() -> list[dict[str, str]]:
    return read_json(DATA / "general_mini.json")


@pytest.fixture(scope="module")
def demo():
    spec = importlib.util.spec_from_file_location("identity_demo", EXAMPLES / "identity_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_config_mixes_identity_and_general_data():
    cfg = tuneforge.load_config(EXAMPLES / "identity_lora.yaml")
    assert cfg.data.dataset == ["identity", "general_mini"]
    assert (ROOT / cfg.data.dataset_dir).resolve() == DATA
    info = read_json(DATA / "dataset_info.json")
    for name in cfg.data.dataset:
        assert (DATA / info[name]["file_name"]).is_file(), name
    # The model's own default system prompt names it SmolLM; the demo trains with its own.
    assert cfg.data.default_system and "SmolLM" not in cfg.data.default_system


def test_general_data_is_small_valid_alpaca(general):
    assert 20 <= len(general) <= 100
    for row in general:
        assert set(row) == ALPACA_KEYS, row
        assert row["instruction"].strip() and row["output"].strip(), row
        assert len(row["output"]) <= 120, f"answers stay short: {row}"
        assert "forgebot" not in row["output"].casefold(), "general data must not teach the name"
    questions = [normalised(row["instruction"]) for row in general]
    assert len(set(questions)) == len(questions), "a question is repeated"


def test_general_data_has_english_and_chinese(general):
    chinese = sum(is_chinese(row["instruction"]) for row in general)
    assert chinese >= 10 and len(general) - chinese >= 10


def test_general_data_does_not_copy_the_forgetting_probe(general):
    """No probe question is in the training data, reworded or not, with its answer."""
    probe = load_probe().questions
    asked = {normalised(q.question) for q in probe}
    for row in general:
        question = row["instruction"].casefold()
        assert normalised(question) not in asked, row
        for q in probe:
            similar = difflib.SequenceMatcher(None, question, q.question.casefold()).ratio()
            assert similar < SIMILAR or not is_correct(row["output"], q.answers), (row, q)


def test_demo_questions_are_held_out(demo, general):
    trained = {
        normalised(row["instruction"])
        for name in ("identity.json", "general_mini.json")
        for row in read_json(DATA / name)
    }
    assert not trained & {normalised(q) for q in demo.HELD_OUT}
    assert any(is_chinese(q) for q in demo.HELD_OUT) and not all(map(is_chinese, demo.HELD_OUT))


def test_demo_names_each_missed_threshold(demo):
    assert demo.thresholds(5, (16, 15, 30), 15 / 16) == []
    assert demo.thresholds(4, (16, 16, 30), 1.0) == []
    assert demo.thresholds(5, (0, 0, 30), None) == []  # nothing to lose
    (name,) = demo.thresholds(3, (16, 16, 30), 1.0)
    assert "3/5 held-out" in name and "at least 4" in name
    (kept,) = demo.thresholds(5, (16, 14, 30), 14 / 16)
    assert "14/30" in kept and "88%" in kept and "90%" in kept
    assert len(demo.thresholds(0, (16, 0, 30), 0.0)) == 2


@pytest.mark.parametrize("name", ["dpo_lora", "kto_lora", "reward_lora"])
def test_preference_examples_read_their_data(name, monkeypatch):
    from tuneforge.data.prepare import read_splits

    monkeypatch.chdir(ROOT)
    cfg = tuneforge.load_config(EXAMPLES / f"{name}.yaml")
    splits = read_splits(cfg, None)
    assert splits.eval is not None and len(splits.eval) >= 40
    marked = cfg.finetune.stage == "kto"
    assert set(splits.train.column_names) >= (
        {"completion", "label"} if marked else {"chosen", "rejected"}
    )
    if marked:
        assert set(splits.train["label"]) == {True, False}


def test_preference_test_prompts_are_held_out():
    train = {normalised(row["instruction"]) for row in read_json(DATA / "concise_pref.json")}
    kto = {
        normalised(row["messages"][0]["content"]) for row in read_json(DATA / "concise_kto.json")
    }
    test = [normalised(row["instruction"]) for row in read_json(DATA / "concise_pref_test.json")]
    assert not (set(test) & (train | kto))
    languages = [is_chinese(question) for question in test]
    assert any(languages) and not all(languages)  # English and Chinese


def test_rambling_answers_hold_the_short_one():
    """Each rejected answer holds the chosen fact; in most training pairs it starts with it and
    goes on, so DPO sees the pair differ where the model should have stopped."""
    pairs = read_json(DATA / "concise_pref.json")
    assert all(row["chosen"] in row["rejected"] != row["chosen"] for row in pairs)
    goes_on = [row["rejected"].startswith(row["chosen"]) for row in pairs]
    assert 0.5 < sum(goes_on) / len(pairs) < 1


def test_tools_example_trains_on_function_calls_that_fit_its_cutoff(tokenizer, monkeypatch):
    from tuneforge.data import get_template
    from tuneforge.data.prepare import read_splits, read_test_rows

    monkeypatch.chdir(ROOT)
    cfg = tuneforge.load_config(EXAMPLES / "tools_lora.yaml")
    assert (cfg.finetune.finetuning_type, cfg.finetune.lora_rank) == ("lora", 16)
    train, test = read_splits(cfg, None).train, read_test_rows(cfg)
    assert all(train["tools"]) and all(test["tools"])
    template = get_template(cfg.data.template, tokenizer, cfg.data.default_system)
    longest = max(
        len(tokenizer(template.render(messages, tools=json.loads(tools)))["input_ids"])
        for messages, tools in zip(train["messages"], train["tools"], strict=True)
    )
    assert longest <= cfg.data.cutoff_len, "a training row would be cut"
    first_turns = [messages[1]["role"] for messages in test["messages"]]
    assert {"function", "assistant"} == set(first_turns)  # calls and plain answers


def test_tools_test_prompts_are_held_out():
    def prompts(name: str) -> list[str]:
        return [
            normalised(row["conversations"][0]["value"]) for row in read_json(DATA / f"{name}.json")
        ]

    test = prompts("tools_test")
    assert not set(test) & set(prompts("tools_train"))
    languages = [is_chinese(prompt) for prompt in test]
    assert any(languages) and not all(languages)
