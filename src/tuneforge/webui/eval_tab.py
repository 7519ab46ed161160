"""The Evaluate tab: score a run's model beside the model it started from (``tuneforge eval``)
and show the metrics side by side with a few answers, or, for a preference run, how often
each model prefers the answer people preferred."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

import gradio as gr
import pandas as pd

import tuneforge
from tuneforge.config.schema import PREFERENCE_STAGES
from tuneforge.errors import UserError
from tuneforge.eval.evaluate import EvalReport
from tuneforge.infer.resolve import resolve_model
from tuneforge.layout import EVAL_DIR
from tuneforge.monitor.runlog import read_run
from tuneforge.webui import form, sources
from tuneforge.webui.locales import TEXTS
from tuneforge.webui.runner import TrainingRunner
from tuneforge.webui.widgets import (
    TRACK_TQDM,
    Texts,
    button,
    field,
    messages_update,
    table,
)

# The two sides metrics.json compares: generation (base vs tuned) and classification.
SIDES = (("base", "tuned"), ("baseline", "model"))
SAMPLE_COLUMNS = ("prompt", "reference", "base", "tuned")
PROMPT_CHARS = 120
# The stages whose answers a reward model can score (the tuned model's win rate).
SCORED_STAGES = ("dpo", "kto")
# Preference metrics of the tuned model alone, under the tuned column.
TUNED_ONLY = ("implicit_reward", "win_rate")


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
    with gr.Row(visible=False) as reward_row:
        reward, _ = field(
            texts, "reward_model", gr.Dropdown, choices=[], allow_custom_value=True, value=None
        )
    start = texts.bind(button("evaluate", "primary"), value="button.evaluate")
    metrics = texts.bind(table("metrics"), label="out.metrics")
    report_box = texts.bind(_report_box, label="out.report")
    samples = texts.bind(
        table("samples", column_widths=["34%", "22%", "22%", "22%"]), label="out.samples"
    )

    refresh.click(lambda: gr.update(choices=sources.run_choices(runner.output_dirs)), None, run)
    run.focus(lambda: gr.update(choices=sources.run_choices(runner.output_dirs)), None, run)
    reward.focus(
        lambda: gr.update(choices=sources.reward_model_choices(runner.output_dirs)), None, reward
    )

    def pick(language: str, folder: str | None) -> list[Any]:
        """The run's test sets, and its last evaluation if it has one."""
        unchanged = [gr.update() for _ in range(4)]
        if not folder:
            return [gr.update(), messages_update([]), *unchanged]
        try:
            cfg = resolve_model(folder).config
            names = sources.dataset_names(cfg.data.dataset_dir)
            found = read_run(folder)
        except UserError as exc:
            return [gr.update(choices=[]), messages_update(exc.lines), *unchanged]
        stage = cfg.finetune.stage
        note = (
            [texts("msg.previous_eval", language, path=Path(folder) / EVAL_DIR)]
            if found.evaluation
            else []
        )
        return [
            gr.update(choices=names),
            messages_update(note, warning=False),
            metrics_frame(texts, language, found.evaluation, stage),
            samples_frame(texts, language, found.samples),
            gr.update(value="", visible=False),  # the report text is not saved, metrics are
            gr.update(visible=stage in SCORED_STAGES),
        ]

    run.change(pick, [lang, run], [test_sets, run_slot, metrics, samples, report_box, reward_row])

    def evaluate(
        language: str,
        folder: str | None,
        names: list[str] | None,
        max_new_tokens: float | None,
        batch_size: float | None,
        reward_model: str | None,
        progress: gr.Progress = TRACK_TQDM,
    ) -> list[Any]:
        unchanged = [gr.update() for _ in range(3)]
        if not folder:
            return [messages_update([texts("msg.pick_run", language)]), *unchanged]
        progress(0, desc=texts("progress.evaluating", language))
        try:
            report, stage = evaluate_run(folder, names, max_new_tokens, batch_size, reward_model)
        except UserError as exc:
            return [messages_update(exc.lines), *unchanged]
        done = texts("msg.evaluated", language, path=report.output_dir)
        return [
            messages_update([done], warning=False),
            metrics_frame(texts, language, report.metrics, stage),
            samples_frame(texts, language, read_run(folder).samples),
            gr.update(value=report.text, visible=bool(report.text)),
        ]

    start.click(
        evaluate,
        [lang, run, test_sets, max_new, batch, reward],
        [run_slot, metrics, samples, report_box],
    )


def evaluate_run(
    folder: str,
    names: list[str] | None = None,
    max_new_tokens: float | None = None,
    batch_size: float | None = None,
    reward_model: str | None = None,
) -> tuple[EvalReport, str]:
    """``tuneforge eval`` of a run folder with the tab's settings: the report and the run's
    stage. The reward model is passed only to the stages whose answers it can score, so a
    value left from another run does not matter."""
    overrides: dict[str, Any] = {"do_train": False}
    if names:
        overrides.update(eval_dataset=names, val_size=0)
    if max_new_tokens:
        overrides["max_new_tokens"] = max_new_tokens
    if batch_size:
        overrides["per_device_eval_batch_size"] = batch_size
    cfg = resolve_model(folder, overrides=overrides).config
    stage = cfg.finetune.stage
    scorer = (reward_model or "").strip() if stage in SCORED_STAGES else ""
    return tuneforge.evaluate(cfg, adapter=folder, reward_model=scorer or None), stage


def metrics_frame(texts: Texts, language: str, metrics: Mapping[str, Any], stage: str) -> Any:
    """The table of a metrics.json: preference metrics for rm/dpo/kto runs, else before/after."""
    if stage in PREFERENCE_STAGES:
        return preference_frame(texts, language, metrics, stage)
    return comparison_frame(texts, language, metrics)


def preference_frame(texts: Texts, language: str, metrics: Mapping[str, Any], stage: str) -> Any:
    """metric | base | tuned | change (dpo/kto: the implicit reward and the win rate are the
    tuned model's alone), or metric | model (a reward model); hidden when there is none."""
    kind = "rm" if stage == "rm" else "pref"

    def label(name: str) -> str:
        key = f"metric.{kind}.{name}"
        return texts(key, language) if key in TEXTS else name  # a metric added since

    before, after = metrics.get("base"), metrics.get("tuned")
    pairs = metrics.get("pairs")
    if isinstance(before, dict) and isinstance(after, dict):
        rows: list[list[Any]] = [[label("pairs"), pairs, pairs, ""]] if _number(pairs) else []
        rows += [
            [label(key), round(before[key], 4), round(value, 4), round(value - before[key], 4)]
            for key, value in after.items()
            if _number(value) and _number(before.get(key))
        ]
        rows += [
            [label(name), "", round(value, 4), ""] for name, value in _flat(metrics, TUNED_ONLY)
        ]
        columns = [texts(f"col.{name}", language) for name in ("metric", "base", "tuned", "delta")]
        return gr.update(value=pd.DataFrame(rows, columns=columns), visible=True)
    alone = metrics.get("model")
    if isinstance(alone, dict):
        rows = [[label("pairs"), pairs]] if _number(pairs) else []
        rows += [[label(key), round(value, 4)] for key, value in alone.items() if _number(value)]
        columns = [texts("col.metric", language), texts("col.model", language)]
        return gr.update(value=pd.DataFrame(rows, columns=columns), visible=True)
    return gr.update(visible=False)


def _flat(metrics: Mapping[str, Any], names: tuple[str, ...]) -> list[tuple[str, float]]:
    """The numbers under `names`, a dict's as ``name.key`` (implicit_reward.accuracy)."""
    found: list[tuple[str, float]] = []
    for name in names:
        value = metrics.get(name)
        if isinstance(value, dict):
            found += [(f"{name}.{key}", v) for key, v in value.items() if _number(v)]
        elif _number(value):
            found.append((name, value))
    return found


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


def _report_box(**props: Any) -> gr.Textbox:
    return gr.Textbox(
        visible=False, interactive=False, lines=10, max_lines=40, elem_id="tf-eval-report", **props
    )


def _tail(prompt: str) -> str:
    """The end of a rendered prompt, where the question is (its start is the system prompt)."""
    return prompt if len(prompt) <= PROMPT_CHARS else "..." + prompt[-PROMPT_CHARS:]


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
