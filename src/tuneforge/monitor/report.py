"""``tuneforge report``: one self-contained HTML page per run, and the same charts as PNG files.

The page embeds its charts as SVG and needs no network to open: the loss and validation loss,
learning rate, gradient norm, throughput, memory, the size of the learned weight change (in
total and per layer), warnings raised during training, the final metrics, the forgetting check,
sample answers and (on function-call data) call accuracy with the most wrong rows when
``tuneforge eval`` ran, and the resolved config.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tuneforge.layout import CONFIG_NAME, REPORT_NAME
from tuneforge.monitor.plots import Curve, Panel, depth_colors, render, run_colors
from tuneforge.monitor.runlog import Run, read_run

logger = logging.getLogger(__name__)

PLOTS_DIR = "plots"
CHANGE_MEASURES = ("delta_norm", "change_norm", "weight_norm")  # LoRA, full/freeze, no copy
_NOT_CURVES = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second"}
# Preference stages: trl logs the chosen - rejected reward margin as rewards/margins (dpo, kto)
# or margin (rm); the report draws it for training and validation in one chart.
MARGIN_KEYS = ("rewards/margins", "margin")


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` and ``<run_dir>/plots/*.png``; returns the page's path."""
    run = read_run(run_dir)
    png_dir = run.path / PLOTS_DIR
    panels = [*series_panels([run]), *weight_panels(run)]
    config = run.path / CONFIG_NAME
    html = page(
        "report.html.j2",
        run=run,
        summary=run.summary(),
        charts=charts(panels, png_dir),
        png_dir=png_dir,
        config_text=config.read_text(encoding="utf-8") if config.is_file() else "unknown",
    )
    out = run.path / REPORT_NAME
    out.write_text(html, encoding="utf-8")
    if run.status != "finished":
        logger.warning("%s: %s", run.name, run.status)
    return out


def change_measure(run: Run) -> str | None:
    """The weight-change series this run logged: LoRA's dW, or the full/freeze change."""
    return next((m for m in CHANGE_MEASURES if run.weight_series(m)), None)


def series_panels(runs: Sequence[Run]) -> list[Panel]:
    """The charts every run has, one colour per run (a single run keeps the default colours)."""
    single = len(runs) == 1
    colors: list[str | None] = [None] if single else list(run_colors(len(runs)))

    def label(run: Run, what: str) -> str:
        return what if single else f"{run.name} {what}"

    def panel(name: str, title: str, ylabel: str, key: str) -> Panel:
        return Panel(
            name,
            title,
            ylabel,
            [
                Curve(label(run, key) if single else run.name, run.series(key), color=color)
                for run, color in zip(runs, colors, strict=True)
            ],
        )

    loss = Panel(
        "loss",
        "Training and validation loss",
        "loss",
        [
            curve
            for run, color in zip(runs, colors, strict=True)
            for curve in (
                Curve(label(run, "training"), run.series("loss"), color=color),
                Curve(label(run, "validation"), run.series("eval_loss"), dashed=True, color=color),
            )
        ],
    )
    change = Panel(
        "weight_change",
        "Size of the learned weight change (LoRA: |scale B A|, full/freeze: |W - W0|)",
        "norm",
        [
            Curve(label(run, measure), run.weight_series(measure), color=color)
            for run, color in zip(runs, colors, strict=True)
            if (measure := change_measure(run))
        ],
    )
    margin = Panel(
        "margin",
        "Reward margin, chosen - rejected (preference stages)",
        "margin",
        [
            curve
            for run, color in zip(runs, colors, strict=True)
            for key in MARGIN_KEYS
            for curve in (
                Curve(label(run, "training"), run.series(key), color=color),
                Curve(
                    label(run, "validation"), run.series(f"eval_{key}"), dashed=True, color=color
                ),
            )
        ],
    )
    shown = _NOT_CURVES | {f"eval_{key}" for key in MARGIN_KEYS}
    metric_keys = sorted(
        {
            key
            for run in runs
            for entry in run.entries
            for key in entry
            if key.startswith("eval_") and key not in shown
        }
    )
    return [
        loss,
        panel("learning_rate", "Learning rate", "learning rate", "learning_rate"),
        panel("grad_norm", "Gradient norm (before clipping)", "norm", "grad_norm"),
        panel("tokens_per_s", "Useful tokens per second of training", "tokens/s", "tokens_per_s"),
        panel("memory", "Memory in use (process RSS)", "GB", "memory_rss_gb"),
        panel("memory_cuda", "CUDA memory allocated", "GB", "memory_cuda_gb"),
        change,
        margin,
        *(
            panel(
                key.replace("/", "_"),  # the PNG's file name; trl's keys hold slashes
                f"Validation {key.removeprefix('eval_')}",
                key.removeprefix("eval_"),
                key,
            )
            for key in metric_keys
        ),
    ]


def weight_panels(run: Run) -> list[Panel]:
    """LoRA A/B norms over time, and the weight change of each layer over time."""
    lora = Panel(
        "lora_norms",
        "LoRA matrix norms (all layers)",
        "norm",
        [Curve(m, run.weight_series(m)) for m in ("lora_A_norm", "lora_B_norm")],
    )
    measure = change_measure(run)
    if measure is None:
        return [lora]
    layers = run.layer_series(measure)
    colors = depth_colors(len(layers))
    return [
        lora,
        Panel(
            "weight_change_by_layer",
            f"{measure} per layer",
            "norm",
            [
                Curve(layer, points, color=color)
                for (layer, points), color in zip(sorted(layers.items()), colors, strict=True)
            ],
        ),
    ]


def charts(panels: Sequence[Panel], png_dir: Path | None) -> list[tuple[Panel, Any]]:
    """(panel, inline SVG) for every panel with data; PNGs into `png_dir` when given."""
    from markupsafe import Markup

    return [(p, Markup(render(p, png_dir))) for p in panels if not p.empty]


def page(template: str, **context: Any) -> str:
    """Render one of the package's HTML templates (autoescaped; SVG passes as Markup)."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("tuneforge.monitor", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["number"] = _number
    env.filters["percent"] = lambda v: "n/a" if v is None else f"{v:.1%}"
    return env.get_template(template).render(**context)


def _number(value: Any) -> str:
    if value is None:
        return "–"
    if (
        isinstance(value, float)
        and math.isfinite(value)
        and value.is_integer()
        and abs(value) < 1e15
    ):
        return f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
