"""``tuneforge compare``: a sweep on one page, best values marked, only differing keys shown."""

from __future__ import annotations

import re

import pytest
from monitor_helpers import color_share, screenshot, train_run

from tuneforge.errors import OutputError
from tuneforge.monitor.compare import config_diff, direction, write_comparison
from tuneforge.monitor.runlog import read_run


def test_compare_of_three_sweep_runs_renders(sweep_runs, tmp_path):
    page = write_comparison(sweep_runs, tmp_path / "sweep.html")
    html = page.read_text(encoding="utf-8")
    for run in sweep_runs:
        assert run.name in html
    assert html.count("<svg") >= 6  # loss, lr, grad norm, tokens/s, memory, weight change
    assert (tmp_path / "sweep_plots" / "loss.png").is_file()
    diff = html[html.index("Configuration differences") :]
    assert "learning_rate" in diff and "0.005" in diff
    assert "lora_rank" not in diff and "output_dir" not in diff
    assert color_share(screenshot(page, "compare.png", height=2600)) > 0.001


def test_the_best_value_of_each_column_is_marked(sweep_runs, tmp_path):
    html = write_comparison(sweep_runs, tmp_path / "c.html").read_text(encoding="utf-8")
    losses = {run.name: read_run(run).summary()["best_eval_loss"] for run in sweep_runs}
    best = min(losses, key=losses.get)
    header = re.search(r"<tr><th>run</th>(.*?)</tr>", html).group(1)
    columns = re.findall(r"<th>(.*?)</th>", header)
    row = re.search(rf"<tr><th>{re.escape(best)}</th>(.*?)</tr>", html).group(1)
    cells = re.findall(r'<td class="num ?(best)?">', row)
    assert cells[columns.index("best_eval_loss")] == "best"
    assert cells[columns.index("steps")] == ""  # neither end is better
    assert direction("eval_accuracy") == "max" and direction("peak_memory_rss_gb") == "min"


def test_runs_of_another_task_are_left_out_and_named(sweep_runs, run_settings, tmp_path):
    pt = train_run(
        run_settings, tmp_path / "pretrain", stage="pt", dataset="notes", val_size=0, max_steps=2
    )
    page = write_comparison([*sweep_runs[:2], pt], tmp_path / "mixed.html")
    html = page.read_text(encoding="utf-8")
    assert (
        "pretrain" in html
        and "is left out: it is a stage pt run and the others are stage sft" in html
    )
    table = html[html.index("<h2>Metrics</h2>") : html.index("<h2>Curves</h2>")]
    assert "pretrain" not in table and sweep_runs[1].name in table


def test_a_sweep_folder_stands_for_its_runs_and_one_run_is_refused(sweep_runs, tmp_path, capsys):
    from tuneforge import cli

    page = write_comparison([sweep_runs[0].parent])
    assert page == sweep_runs[0].parent / "compare.html"
    assert all(run.name in page.read_text(encoding="utf-8") for run in sweep_runs)
    with pytest.raises(OutputError, match="compare needs at least two runs; found 1"):
        write_comparison([sweep_runs[0]])
    assert cli.main(["compare", str(sweep_runs[0]), str(tmp_path)]) == OutputError.exit_code
    err = capsys.readouterr().err.strip()
    assert (
        err == f"tuneforge: error: {tmp_path}: not a tuneforge run (no tuneforge_config.yaml "
        f"or trainer_log.jsonl); give the output_dir of a training run"
    )


def test_config_diff_keeps_only_differing_keys(sweep_runs):
    runs = [read_run(run) for run in sweep_runs]
    runs[2].config.pop("lora_rank")
    diff = config_diff(runs)
    assert list(diff) == ["lora_rank", "learning_rate"]
    assert diff["lora_rank"] == [8, 8, "–"]
