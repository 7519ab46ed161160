"""``tuneforge plan`` on a streamed config reads only the first rows and says its data
figures come from that sample."""

from __future__ import annotations

import tuneforge
from tuneforge.planning import report
from tuneforge.planning.report import make_plan


def test_plan_of_a_stream_measures_a_sample_and_says_so(tiny_config, device_of, monkeypatch):
    device_of(64)
    monkeypatch.setattr(report, "STREAM_SAMPLE", 5)
    cfg = tuneforge.load_config({**tiny_config, "streaming": True, "max_steps": 10})
    plan = make_plan(cfg)
    assert plan.data is not None and plan.data.samples == 5
    assert (
        "(streaming: these figures come from a sample, the first 5 rows of each dataset)"
        in plan.text()
    )
    assert "num_train_epochs" not in {row.setting for row in plan.advice}
