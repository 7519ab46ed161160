"""The training job as the page shows it: state, progress bar with ETA, the loss curves and
the last console lines, refreshed by a timer from the files the job writes."""

from __future__ import annotations

import html
import math
from typing import Any

import gradio as gr
import pandas as pd

from tuneforge.errors import UserError
from tuneforge.webui.progress import CURVES, Progress, format_duration, read_progress
from tuneforge.webui.runner import Job, TrainingRunner
from tuneforge.webui.widgets import Texts

LOG_LINES = 12
PLOT_COLUMNS = ["step", "loss", "series"]


def build_run_panel(texts: Texts, lang: gr.Radio, timer: gr.Timer, runner: TrainingRunner) -> None:
    status = gr.HTML(texts("state.idle"), elem_id="tf-progress")
    plot = texts.bind(_plot, label="out.plot")
    console = texts.bind(_console, label="out.log")
    shown = gr.State(None)

    def refresh(language: str, last: Any) -> list[Any]:
        job = runner.job
        try:
            progress = (
                read_progress(job.output_dir, 0 if job.resumed else job.started) if job else None
            )
        except UserError as exc:  # a damaged log: say so instead of drawing it
            return [html.escape(" ".join(exc.lines)), gr.skip(), gr.skip(), last]
        lines = job.console_lines(LOG_LINES) if job else []
        seen = (language, job and job.state, progress and progress.last, lines[-1:])
        if seen == last:
            return [gr.skip(), gr.skip(), gr.skip(), last]
        return [
            status_html(texts, language, job, progress),
            curves_frame(progress),
            "\n".join(lines),
            seen,
        ]

    timer.tick(refresh, [lang, shown], [status, plot, console, shown], show_progress="hidden")
    lang.change(refresh, [lang, gr.State(None)], [status, plot, console, shown])


def status_html(texts: Texts, language: str, job: Job | None, progress: Progress | None) -> str:
    """One line for the job's state, then a progress bar with step, ETA and the last losses."""
    if job is None:
        return html.escape(texts("state.idle", language))
    state = job.state
    if state == "running" and progress is None:
        state = "starting"
    words = texts(f"state.{state}", language, path=job.output_dir, code=job.process.returncode)
    parts = [f"<div class='tf-state tf-state-{state}'>{html.escape(words)}</div>"]
    if progress is not None:
        details = [
            texts("progress.step", language, step=progress.step, total=progress.max_steps or "?")
        ]
        if state in ("running", "stopping"):
            details.append(
                texts("progress.eta", language, eta=format_duration(progress.eta_s))
                if progress.eta_s is not None
                else texts("progress.estimating", language)
            )
        for key in CURVES:
            if progress.curves[key]:
                details.append(
                    f"{texts('series.' + key, language)} {progress.curves[key][-1][1]:.4f}"
                )
        parts.append(
            f"<progress max='1' value='{progress.fraction:.4f}'></progress>"
            f"<div class='tf-details'>{html.escape(' · '.join(details))}</div>"
        )
    return "".join(parts)


def curves_frame(progress: Progress | None) -> pd.DataFrame | None:
    """The loss curves, one row per (step, value, curve). Both curves are always there (a
    curve not logged yet as one empty point): gradio fixes the legend at the first data it
    draws, so a curve that appeared later would never get a colour. For the same reason the
    curves are named by their log keys, not in the page language."""
    if progress is None:
        return None
    rows = [(step, value, key) for key in CURVES for step, value in progress.curves[key]]
    rows += [(progress.step, math.nan, key) for key in CURVES if not progress.curves[key]]
    return pd.DataFrame(rows, columns=PLOT_COLUMNS).astype(
        {"step": "int64", "loss": "float64", "series": "str"}
    )


def _plot(**props: Any) -> gr.LinePlot:
    return gr.LinePlot(
        None, x="step", y="loss", color="series", elem_id="tf-plot", height=360, **props
    )


def _console(**props: Any) -> gr.Textbox:
    return gr.Textbox(
        lines=12, max_lines=12, interactive=False, autoscroll=True, elem_id="tf-console", **props
    )
