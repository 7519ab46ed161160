"""Progress from trainer_log.jsonl: the step, the ETA of the current process, the curves."""

from __future__ import annotations

import json

from tuneforge.webui.progress import eta_seconds, format_duration, read_progress


def _entry(step, elapsed, **logs):
    return {
        "step": step,
        "max_steps": 100,
        "epoch": step / 50,
        "tokens": step * 64,
        "elapsed_s": elapsed,
        **logs,
    }


def test_eta_uses_the_speed_since_the_last_resume():
    first_run = [_entry(10, 20.0), _entry(20, 40.0)]  # 2 s/step
    assert eta_seconds(first_run) == 80 * 2.0
    resumed = [*first_run, _entry(30, 5.0), _entry(40, 10.0)]  # 0.5 s/step after resuming
    assert eta_seconds(resumed) == 60 * 0.5
    assert eta_seconds(resumed[:3]) is None  # one entry of the new process: no speed yet


def test_read_progress_gives_step_curves_and_eta(tmp_path):
    entries = [
        _entry(5, 10.0, loss=2.5, learning_rate=1e-3),
        _entry(10, 20.0, loss=2.0),
        _entry(10, 22.0, eval_loss=2.2),
        {"step": 10, "alert": "loss_spike"},
        _entry(15, 30.0, loss=1.5),
    ]
    (tmp_path / "trainer_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    progress = read_progress(tmp_path)
    assert progress.step == 15 and progress.max_steps == 100 and progress.fraction == 0.15
    assert progress.curves == {"loss": [(5, 2.5), (10, 2.0), (15, 1.5)], "eval_loss": [(10, 2.2)]}
    assert progress.eta_s == 85 * 2.0  # 10 steps in 20 s
    written = (tmp_path / "trainer_log.jsonl").stat().st_mtime
    assert read_progress(tmp_path, since=written + 60) is None  # an older run's log
    assert read_progress(tmp_path / "missing") is None


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (42, 185, 3725)] == ["42s", "3m 05s", "1h 02m"]
