"""``tuneforge sweep``: grid values checked before any run, runs ranked, divergence flagged,
and an interrupted sweep continuing where it stopped."""

from __future__ import annotations

import json
import math

import pytest

import tuneforge
from tuneforge.cli import main
from tuneforge.errors import ConfigError, OutputError
from tuneforge.planning import sweep as sweep_module
from tuneforge.planning.sweep import diverged, parse_grid, run_name


def test_grid_flags_become_config_keys_and_bad_values_are_one_line():
    grid = parse_grid("5e-5,1e-4,1e-4", "2,4", ["lora_rank=8,16"])
    assert grid == {
        "learning_rate": [5e-5, 1e-4],
        "per_device_train_batch_size": [2, 4],
        "lora_rank": [8, 16],
    }
    assert run_name({"learning_rate": 1e-4, "per_device_train_batch_size": 4}) == (
        "lr-0.0001_batch-4"
    )
    with pytest.raises(ConfigError, match=r"^--lr: 'abc' is not a number$"):
        parse_grid("1e-4,abc", None, [])
    with pytest.raises(ConfigError, match="an empty value"):
        parse_grid(None, "2,,4", [])
    with pytest.raises(ConfigError, match="expected key=value1,value2"):
        parse_grid(None, None, ["lora_rank"])
    with pytest.raises(ConfigError, match="nothing to vary"):
        parse_grid(None, None, [])


def test_invalid_grid_values_stop_the_sweep_before_any_run(tiny_config, tmp_path, capsys):
    cfg = tuneforge.load_config(tiny_config)
    with pytest.raises(ConfigError) as caught:
        tuneforge.sweep(
            cfg, {"learning_rate": [1e-3, -1.0], "lora_rank": [0]}, tmp_path / "s", max_steps=2
        )
    assert all(line.startswith("sweep run lr-") for line in caught.value.lines)
    assert any("learning_rate=-1.0" in line for line in caught.value.lines)
    assert any("lora_rank=0" in line for line in caught.value.lines)
    assert not (tmp_path / "s").exists()
    config = tmp_path / "run.yaml"
    config.write_text("\n".join(f"{k}: {v}" for k, v in tiny_config.items()))
    assert main(["sweep", str(config), "--lr", "1e-3,x", "--max-steps", "2"]) == 2
    assert capsys.readouterr().err.strip() == "tuneforge: error: --lr: 'x' is not a number"
    grid = ["--grid", "lora_target=[q_proj", "--max-steps", "2"]
    assert main(["sweep", str(config), *grid]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .startswith("tuneforge: error: --grid 'lora_target=[q_proj': the value is not valid YAML")
    )


def test_divergence_is_a_nan_or_a_rising_loss():
    assert diverged([2.0, 1.5, 1.2, 1.0, 0.9, 0.8], 0.9) is None
    assert diverged([2.0, 1.5, math.nan], None) == "loss is NaN or infinite"
    assert diverged([2.0, 1.9], math.inf) == "loss is NaN or infinite"
    assert diverged([1.0, 1.1, 1.5, 2.0, 3.0, 4.0], 4.0).startswith("loss rose from 1.05 to 3.5")


def test_sweep_ranks_runs_and_continues_after_an_interruption(tiny_config, tmp_path, monkeypatch):
    cfg = tuneforge.load_config(tiny_config)
    grid = {"learning_rate": [1e-3, 5e-2], "per_device_train_batch_size": [4]}
    folder = tmp_path / "sweep"
    real_run = sweep_module._run
    calls: list[str] = []

    def interrupted_third(name, settings, run_cfg, metric, train):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(name, settings, run_cfg, metric, train)

    monkeypatch.setattr(sweep_module, "_run", interrupted_third)
    with pytest.raises(KeyboardInterrupt):
        tuneforge.sweep(cfg, grid, folder, max_steps=3)
    state = json.loads((folder / "sweep.json").read_text())
    assert list(state["runs"]) == ["lr-0.001_batch-4"]

    calls.clear()
    result = tuneforge.sweep(cfg, grid, folder, max_steps=3)
    assert calls == ["lr-0.05_batch-4"]  # the finished run is not trained again
    ranked = result.ranked()
    assert len(ranked) == 2 and all(outcome.steps == 3 for outcome in ranked)
    losses = [outcome.metric for outcome in ranked if outcome.diverged is None]
    assert losses == sorted(losses) and all(math.isfinite(loss) for loss in losses)
    table = result.table()
    assert table.splitlines()[0].split()[:5] == [
        "rank",
        "run",
        "learning_rate",
        "per_device_train_batch_size",
        "eval_loss",
    ]
    assert ranked[0].name in table.splitlines()[1]
    with pytest.raises(OutputError, match="another config or budget"):
        tuneforge.sweep(cfg, grid, folder, max_steps=4)
