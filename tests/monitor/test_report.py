"""``tuneforge report``: a self-contained page that a browser renders, PNGs, unfinished runs."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from monitor_helpers import color_share, screenshot

from tuneforge.errors import OutputError
from tuneforge.monitor.report import write_report

CHARTS = [
    "loss",
    "learning_rate",
    "grad_norm",
    "tokens_per_s",
    "memory",
    "weight_change",
    "lora_norms",
    "weight_change_by_layer",
]


@pytest.fixture(scope="module")
def report(sft_run) -> Path:
    return write_report(sft_run)


def test_report_embeds_every_chart_and_needs_no_network(report, sft_run):
    html = report.read_text(encoding="utf-8")
    assert report == sft_run / "report.html"
    assert html.count("<svg") == len(CHARTS)
    assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', html)
    assert "<script" not in html and "<link" not in html
    assert "finished" in html and "learning_rate: 0.02" in html  # status and resolved config
    for name in CHARTS:
        png = sft_run / "plots" / f"{name}.png"
        assert color_share(png) > 0.002, name


def test_report_renders_in_headless_chromium(report):
    shot = screenshot(report, "report.png")
    assert color_share(shot) > 0.001  # the charts' lines: without them it is ~0.00001


def test_report_of_a_run_that_crashed_half_way_shows_what_was_logged(sft_run, tmp_path):
    run = tmp_path / "crashed"
    shutil.copytree(sft_run, run)
    (run / "all_results.json").unlink()
    lines = (run / "trainer_log.jsonl").read_text().splitlines()
    kept = [line for line in lines if json.loads(line)["step"] <= 3]
    (run / "trainer_log.jsonl").write_text("\n".join(kept) + '\n{"step": 4, "lo')
    html = write_report(run).read_text(encoding="utf-8")
    assert "stopped early at step 3 of 6" in html
    assert "the last line was cut off" in html
    assert html.count("<svg") >= 5


def test_report_shows_evaluation_samples_and_the_forgetting_check(sft_run, tmp_path):
    run = tmp_path / "evaluated"
    shutil.copytree(sft_run, run)
    evaluation = run / "eval"
    evaluation.mkdir()
    row = {"index": 0, "prompt": "What do bees make?", "reference": "Honey."}
    (evaluation / "generated_predictions.jsonl").write_text(
        json.dumps({**row, "prediction": "Honey, of course."}) + "\n"
    )
    (evaluation / "generated_predictions_base.jsonl").write_text(
        json.dumps({**row, "prediction": "Bees make <noise>."}) + "\n"
    )
    (evaluation / "metrics.json").write_text(json.dumps({"tuned": {"bleu": 41.5}}))
    (evaluation / "forgetting.json").write_text(
        json.dumps(
            {
                "base": {"answers_correct": 0.5},
                "tuned": {"answers_correct": 0.4},
                "kept": {"answers_correct": 0.8},
            }
        )
    )
    html = write_report(run).read_text(encoding="utf-8")
    assert "Honey, of course." in html and "Bees make &lt;noise&gt;." in html
    assert "test_bleu" in html and "41.5" in html
    assert "80.0%" in html


def test_report_shows_tool_call_accuracy_and_the_most_wrong_rows(sft_run, tmp_path):
    run = tmp_path / "tools"
    shutil.copytree(sft_run, run)
    (run / "eval").mkdir()
    wrong = {
        "index": 3,
        "prompt": "Weather in Oslo?",
        "expected": 'get_weather({"city": "Oslo"})',
        "tuned": "<tool_call>{bad</tool_call>",
        "tuned_problems": ["unreadable call: call 1 is not valid JSON"],
        "base": "It is sunny.",
        "base_problems": ["answered instead of calling"],
    }
    metrics = {
        "samples": 40,
        "call_samples": 28,
        "tool_format": "hermes",
        "base": {"tool_arguments_exact": 0.0357},
        "tuned": {"tool_arguments_exact": 0.8214},
        "wrong_tool_calls": [wrong],
    }
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    html = write_report(run).read_text(encoding="utf-8")
    section = html[html.index("<h2>Tool calls (tuneforge eval)</h2>") :]
    assert "28 expect a call; calls read in hermes format" in section
    assert re.search(r"tool_arguments_exact</td>\s*<td[^>]*>0.0357</td><td[^>]*>0.8214", section)
    assert "&lt;tool_call&gt;{bad&lt;/tool_call&gt;" in section
    assert "unreadable call: call 1 is not valid JSON" in section and "It is sunny." in section


def test_a_folder_that_is_not_a_run_is_one_clear_error(tmp_path, capsys):
    from tuneforge import cli

    with pytest.raises(OutputError, match="not a tuneforge run"):
        write_report(tmp_path)
    assert cli.main(["report", str(tmp_path / "nope")]) == OutputError.exit_code
    assert capsys.readouterr().err.strip() == (
        f"tuneforge: error: {tmp_path / 'nope'}: no such folder; give the output_dir of a "
        f"training run"
    )
