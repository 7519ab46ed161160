"""The Evaluate tab: score a run's model beside the model it started from (``tuneforge eval``)
and show the metrics side by side with a few answers."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

import tuneforge
from tuneforge.errors import UserError
from tuneforge.infer.resolve import resolve_model
from tuneforge.layout import EVAL_DIR
from tuneforge.monitor.runlog import read_run
from tuneforge.webui import form, sources
from tuneforge.webui.runner import TrainingRunner
from tuneforge.webui.widgets import TRACK_TQDM, Texts, button, field, messages_update, table

# The two sides metrics.json compares: generation (base vs tuned) and classification.
SIDES = (("base", "tuned"), ("baseline", "model"))
SAMPLE_COLUMNS = ("prompt", "reference", "base", "tuned")
PROMPT_CHARS = 120


def build_eval_tab(texts: Texts, lang: gr.Radio, runner: TrainingRunner) -> None:
    with gr.Row():
        run, run_slot = field(
            texts, "run", gr.Dropdown, choices=None, allow_custom_value=True, value=None, scale=3
        )
        refresh = texts.bind(button("eval-refresh"), value="button.refresh")
    with gr.Row():
        test_sets, _ = field(
            texts, "eval_dataset", gr.Dropdown, multiselect=True, allow_custom_value=True, value=[]
        )
        max_new, _ = field(
            texts,
            "max_new_tokens",
            gr.Number,
            precision=0,
            value=128,
            elem_id="tf-eval-max_new_tokens",
        )
        batch, _ = field(
            texts,
            "per_device_eval_batch_size",
            gr.Number,
            precision=0,
            value=form.schema_field("per_device_eval_batch_size").default,
        )
    start = texts.bind(button("evaluate", "primary"), value="button.evaluate")
    metrics = texts.bind(table("metrics"), label="out.metrics")
    samples = texts.bind(
        table("samples", column_widths=["34%", "22%", "22%", "22%"]), label="out.samples"
    )

    refresh.click(lambda: gr.update(choices=sources.run_choices(runner.output_dirs)), None, run)
    run.focus(lambda: gr.update(choices=sources.run_choices(runner.output_dirs)), None, run)

    def pick(language: str, folder: str | None) -> list[Any]:
        """The run's test sets, and its last evaluation if it has one."""
        if not folder:
            return [gr.update(), messages_update([]), gr.update(), gr.update()]
        try:
            cfg = resolve_model(folder).config
            names = sources.dataset_names(cfg.data.dataset_dir)
            found = read_run(folder)
        except UserError as exc:
            return [gr.update(choices=[]), messages_update(exc.lines), gr.update(), gr.update()]
        note = (
            [texts("msg.previous_eval", language, path=Path(folder) / EVAL_DIR)]
            if found.evaluation
            else []
        )
        return [
            gr.update(choices=names),
            messages_update(note, warning=False),
            comparison_frame(texts, language, found.evaluation),
            samples_frame(texts, language, found.samples),
        ]

    run.change(pick, [lang, run], [test_sets, run_slot, metrics, samples])

    def evaluate(
        language: str,
        folder: str | None,
        names: list[str] | None,
        max_new_tokens: float | None,
        batch_size: float | None,
        progress: gr.Progress = TRACK_TQDM,
    ) -> list[Any]:
        if not folder:
            return [messages_update([texts("msg.pick_run", language)]), gr.update(), gr.update()]
        progress(0, desc=texts("progress.evaluating", language))
        overrides: dict[str, Any] = {"do_train": False}
        if names:
            overrides.update(eval_dataset=names, val_size=0)
        if max_new_tokens:
            overrides["max_new_tokens"] = max_new_tokens
        if batch_size:
            overrides["per_device_eval_batch_size"] = batch_size
        try:
            cfg = resolve_model(folder, overrides=overrides).config
            report = tuneforge.evaluate(cfg, adapter=folder)
        except UserError as exc:
            return [messages_update(exc.lines), gr.update(), gr.update()]
        done = texts("msg.evaluated", language, path=report.output_dir)
        return [
            messages_update([done], warning=False),
            comparison_frame(texts, language, report.metrics),
            samples_frame(texts, language, read_run(folder).samples),
        ]

    start.click(evaluate, [lang, run, test_sets, max_new, batch], [run_slot, metrics, samples])


def comparison_frame(texts: Texts, language: str, metrics: Mapping[str, Any]) -> Any:
    """metric | before | after | change, from a metrics.json; hidden when there is none."""
    for left, right in SIDES:
        before, after = metrics.get(left), metrics.get(right)
        if isinstance(before, dict) and isinstance(after, dict):
            rows = [
                [key, round(before[key], 4), round(value, 4), round(value - before[key], 4)]
                for key, value in after.items()
                if _number(value) and _number(before.get(key))
            ]
            columns = [
                texts("col.metric", language),
                texts(f"col.{left}", language),
                texts(f"col.{right}", language),
                texts("col.delta", language),
            ]
            return gr.update(value=pd.DataFrame(rows, columns=columns), visible=True)
    alone = metrics.get("model")
    if isinstance(alone, dict):
        rows = [[key, round(value, 4)] for key, value in alone.items() if _number(value)]
        columns = [texts("col.metric", language), texts("col.model", language)]
        return gr.update(value=pd.DataFrame(rows, columns=columns), visible=True)
    return gr.update(visible=False)


def samples_frame(texts: Texts, language: str, rows: list[dict[str, Any]]) -> Any:
    """The first answers, tuned beside base (as `read_run` pairs them)."""
    if not rows:
        return gr.update(visible=False)
    columns = [texts(f"col.{name}", language) for name in SAMPLE_COLUMNS]
    data = [
        [_tail(row.get("prompt") or ""), *(row.get(name) or "" for name in SAMPLE_COLUMNS[1:])]
        for row in rows
    ]
    return gr.update(value=pd.DataFrame(data, columns=columns), visible=True)


def _tail(prompt: str) -> str:
    """The end of a rendered prompt, where the question is (its start is the system prompt)."""
    return prompt if len(prompt) <= PROMPT_CHARS else "..." + prompt[-PROMPT_CHARS:]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
