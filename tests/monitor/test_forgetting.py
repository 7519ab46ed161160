"""The forgetting check on the tiny model: base, tuned and kept numbers that can be recomputed."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tuneforge.infer import resolve_model
from tuneforge.monitor.forgetting import (
    Probe,
    Question,
    check_forgetting,
    is_correct,
    kept_shares,
    load_probe,
)

SMALL = Probe(
    texts={
        "en": ["The river grows wider on its way to the sea.", "Bees make honey."],
        "zh": ["春天来了，花都开了。"],
    },
    questions=[Question("en", "What do bees make?", ("honey",))],
)


def test_shipped_probe_has_english_and_chinese_text_and_questions():
    probe = load_probe()
    assert set(probe.texts) == {"en", "zh"} and all(len(t) >= 30 for t in probe.texts.values())
    assert len(probe.questions) >= 20 and {q.lang for q in probe.questions} == {"en", "zh"}
    assert all(q.answers for q in probe.questions)


def test_base_tuned_and_kept_numbers_match_a_direct_computation(sft_run, tiny_model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tuned = resolve_model(sft_run, overrides={"infer_dtype": "float32"})  # as computed below
    result = check_forgetting(tuned, tuned.base_model(), tmp_path, probe=SMALL)

    tokenizer = AutoTokenizer.from_pretrained(sft_run)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)

    def direct_perplexity(net, texts):
        nll, count = 0.0, 0
        for text in texts:
            ids = tokenizer(text, return_tensors="pt").input_ids
            with torch.no_grad():
                logits = net(ids).logits[0, :-1].float()
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
        return math.exp(nll / count)

    base_en = direct_perplexity(model, SMALL.texts["en"])
    tuned_en = direct_perplexity(PeftModel.from_pretrained(model, sft_run), SMALL.texts["en"])
    assert result.base["perplexity_en"] == pytest.approx(base_en, rel=1e-4)
    assert result.tuned["perplexity_en"] == pytest.approx(tuned_en, rel=1e-4)
    assert base_en != pytest.approx(tuned_en, rel=1e-4)  # the adapter changed something
    assert result.kept["perplexity_en"] == pytest.approx(
        result.base["perplexity_en"] / result.tuned["perplexity_en"]
    )
    assert set(result.base) == {"perplexity_en", "perplexity_zh", "answers_correct"}
    saved = json.loads((tmp_path / "forgetting.json").read_text())
    assert saved["kept"] == pytest.approx(result.kept)
    (answer,) = saved["answers"]
    assert answer["question"] == "What do bees make?" and answer["accepted"] == ["honey"]
    assert result.base["answers_correct"] == float(is_correct(answer["base"], ["honey"]))
    assert "perplexity_en" in result.table() and "kept" in result.table()


def test_answers_are_matched_as_words_or_chinese_substrings():
    assert is_correct("Paris is the capital.", ["Paris"])
    assert is_correct("There are seven days.", ["7", "seven"])
    assert not is_correct("There are 17 of them.", ["7"])
    assert not is_correct("Parisian food", ["Paris"])
    assert is_correct("中国的首都是北京。", ["北京"])


def test_kept_share_is_base_over_tuned_for_perplexity_and_warns_below_ninety_percent():
    kept = kept_shares(
        {"perplexity_en": 10.0, "answers_correct": 0.5},
        {"perplexity_en": 12.5, "answers_correct": 0.5},
    )
    assert kept == {"perplexity_en": pytest.approx(0.8), "answers_correct": 1.0}
    assert kept_shares({"answers_correct": 0.0}, {"answers_correct": 0.2}) == {
        "answers_correct": None
    }


def test_eval_forgetting_command_prints_base_tuned_kept(
    sft_run, run_settings, tmp_path, monkeypatch, capsys
):
    from tuneforge import cli
    from tuneforge.monitor import forgetting

    monkeypatch.setattr(forgetting, "load_probe", lambda: SMALL)  # the shipped probe is slower
    config = tmp_path / "eval.yaml"
    config.write_text(
        "\n".join(
            f"{k}: {v}"
            for k, v in {
                "model_name_or_path": run_settings["model_name_or_path"],
                "dataset": run_settings["dataset"],
                "dataset_dir": run_settings["dataset_dir"],
            }.items()
        )
    )
    code = cli.main(
        [
            "-q",
            "eval",
            str(config),
            "--adapter",
            str(sft_run),
            "--forgetting",
            "--out",
            str(tmp_path / "e"),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["forgetting", "check", "base", "tuned", "kept"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:4]}
    assert set(rows) == {"perplexity_en", "perplexity_zh", "answers_correct"}
    saved = json.loads((tmp_path / "e" / "forgetting.json").read_text())
    assert float(rows["perplexity_zh"][0]) == pytest.approx(
        saved["base"]["perplexity_zh"], rel=1e-3
    )
    assert lines[-1] == f"Forgetting check in {tmp_path / 'e' / 'forgetting.json'}"
    assert not (tmp_path / "e" / "metrics.json").exists()  # no test data: forgetting only


def test_forgetting_needs_an_adapter(run_settings, tmp_path, capsys):
    from tuneforge import cli

    config = tmp_path / "eval.yaml"
    config.write_text(f"model_name_or_path: {run_settings['model_name_or_path']}\n")
    assert cli.main(["eval", str(config), "--forgetting"]) == 2
    assert capsys.readouterr().err.strip() == (
        "tuneforge: error: --forgetting compares a fine-tuned model with the model it started "
        "from: give --adapter <training output folder>"
    )
