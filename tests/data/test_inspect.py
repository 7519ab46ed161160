"""``tuneforge data inspect``: duplicates, empty fields, token lengths against cutoff_len,
language/script mix and label balance, on files written for each case."""

from __future__ import annotations

from tuneforge.cli import main
from tuneforge.data.duplicates import find_duplicates, normalize
from tuneforge.data.inspect import inspect_datasets
from tuneforge.data.inspect_report import render_histogram
from tuneforge.data.samples import read_samples

ROWS = [
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
    {"instruction": "what is the capital of france", "input": "", "output": "Paris"},
    {"instruction": "What is the capital of France?", "input": "", "output": "Paris."},
    {"instruction": "Name a colour.", "input": "", "output": "   "},
    {"instruction": "天空是什么颜色？", "input": "", "output": "天空通常是蓝色的。"},
    {"instruction": "Write a long story. " * 30, "input": "", "output": "Once upon a time. " * 40},
]


def test_duplicates_exact_and_normalised_are_found_and_located(make_data, make_config):
    folder = make_data({"qa": {"file_name": "qa.json"}}, {"qa.json": ROWS})
    samples = read_samples(make_config(folder, dataset=["qa"]))
    found = find_duplicates(samples)["qa"]
    assert (found.exact, found.normalized) == (1, 2)
    assert found.example == (f"{folder / 'qa.json'}: row 1", f"{folder / 'qa.json'}: row 2")
    assert normalize("  What IS the capital,  of France?! ") == "what is the capital of france"


def test_inspect_reports_empty_fields_lengths_truncation_and_mix(make_data, make_config, tokenizer):
    folder = make_data({"qa": {"file_name": "qa.json"}}, {"qa.json": ROWS})
    report = inspect_datasets(make_config(folder, dataset=["qa"], cutoff_len=100), tokenizer)
    (facts,) = report.datasets
    assert facts.samples == 6 and facts.unusable == 1
    assert facts.empty_fields == {"output": 1}
    assert "row 4: 'output' is empty" in facts.first_problem
    total = report.lengths.total
    assert len(total.values) == 5 and max(total.values) > 100
    assert report.truncated == 1
    assert report.suggested_cutoff_len % 64 == 0
    assert report.suggested_cutoff_len >= total.percentile(95)
    for prompt, response, whole in zip(
        report.lengths.prompt.values, report.lengths.response.values, total.values, strict=True
    ):
        assert prompt + response == whole and response > 0
    assert report.languages["zh"] == 1 and report.scripts["Han"] == 1
    assert report.scripts["Latin"] == 4
    text = report.text()
    assert "duplicates: 1 exact, 2 ignoring case, spaces and punctuation" in text
    assert "cutoff_len=100 truncates 1 of 5 samples (20.0%)" in text
    assert "<- cutoff_len" in text and "p95" in text


def test_label_balance_for_classification_data(make_data, make_config, tokenizer):
    rows = [{"text": f"review {i}", "label": "good" if i % 4 else "bad"} for i in range(12)]
    folder = make_data({"reviews": {"file_name": "reviews.jsonl"}}, {"reviews.jsonl": rows})
    report = inspect_datasets(make_config(folder, dataset=["reviews"], stage="cls"), tokenizer)
    assert report.datasets[0].labels == {"good": 9, "bad": 3}
    assert "labels: good 9 (75%), bad 3 (25%) (largest/smallest class: 3.0x)" in report.text()


def test_histogram_bars_scale_with_counts_and_mark_the_cutoff():
    lines = render_histogram([10, 10, 10, 50, 90], mark=55, bins=4, width=6)
    assert len(lines) == 4 and lines[0].count("█") == 6 and lines[0].rstrip().endswith(" 3")
    assert sum("<- cutoff_len" in line for line in lines) == 1


def test_cli_inspect_and_a_missing_dataset_file_is_one_line(make_data, tmp_path, capsys):
    folder = make_data(
        {"qa": {"file_name": "qa.json"}, "gone": {"file_name": "gone.json"}}, {"qa.json": ROWS}
    )
    config = tmp_path / "data.yaml"
    config.write_text(f"dataset: qa\ndataset_dir: {folder}\ncutoff_len: 100\n")
    assert main(["data", "inspect", str(config)]) == 0
    assert "dataset 'qa': 6 samples" in capsys.readouterr().out
    assert main(["data", "inspect", str(config), "dataset=gone"]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gone.json: not found" in err[0]
