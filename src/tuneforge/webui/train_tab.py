"""The Train tab: the form, the dataset preview, the equivalent command, the plan, and the
buttons that start, stop and resume the server's training job."""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

import tuneforge
from tuneforge.config import load_config
from tuneforge.data import NAMED_TEMPLATES
from tuneforge.errors import UserError
from tuneforge.webui import form, sources
from tuneforge.webui.form import (
    EMPTY_CHOICE,
    EXTRA,
    FIELDS,
    GROUPS,
    PRECISION,
    PRECISIONS,
    STAGE_ROWS,
)
from tuneforge.webui.run_panel import build_run_panel
from tuneforge.webui.runner import TrainingRunner
from tuneforge.webui.widgets import (
    Choices,
    Texts,
    bound_factory,
    button,
    field,
    messages_update,
    plain,
    table,
)

# Widgets whose value is committed when they lose focus; the others on every user input.
_TYPED = (gr.Textbox,)
_VARIANTS = {"start": "primary", "stop": "stop"}


def build_train_tab(texts: Texts, lang: gr.Radio, timer: gr.Timer, runner: TrainingRunner) -> None:
    defaults = form.default_values()
    widgets: dict[str, Any] = {}
    slots: dict[str, Any] = {}
    for group in ("model", "data", "training", "lora"):
        texts.bind(gr.Markdown, value=f"section.{group}")
        for row in GROUPS[group]:
            with gr.Row():
                _add_fields(texts, row, defaults, widgets, slots)
        if group == "model":
            stage_blocks = _add_stage_rows(texts, defaults, widgets, slots)
        if group == "data":
            preview = texts.bind(table("first-samples"), label="out.preview")
    with texts.bind(_accordion, label="section.extra"):
        _add_fields(texts, GROUPS["extra"][0], defaults, widgets, slots)

    with gr.Row():
        buttons = {
            name: texts.bind(button(name, _VARIANTS.get(name, "secondary")), value=f"button.{name}")
            for name in ("preview", "plan", "start", "stop", "resume")
        }
    message = gr.Markdown(elem_id="tf-train-message")
    with gr.Row():
        yaml_box = texts.bind(_code("yaml", "tf-yaml"), label="out.yaml")
        command_box = texts.bind(_code("shell", "tf-command"), label="out.command")
    plan_box = texts.bind(_plan_box, label="out.plan")
    with gr.Row():
        config_path = texts.bind(_path_box, label="field.config_path", info="hint.config_path")
        with gr.Column(scale=1):
            save = texts.bind(button("save"), value="button.save")
            load = texts.bind(button("load"), value="button.load")
    texts.bind(gr.Markdown, value="section.run")
    build_run_panel(texts, lang, timer, runner)

    inputs = [lang, *(widgets[key] for key in FIELDS)]
    checked_outputs = [*(slots[key] for key in FIELDS), message]

    def show(language: str, problems: dict[str, list[str]], note: str = "") -> list[Any]:
        """Each field's messages under it; the others, a pointer to them, or `note` above."""
        general = [texts("msg.invalid", language)] if set(problems) - {""} else []
        lines = [*general, *problems.get("", [])] or [note]
        return [*(messages_update(problems.get(key, [])) for key in FIELDS), _lines(lines)]

    def check(values: Sequence[Any]) -> tuple[dict[str, Any] | None, dict[str, list[str]]]:
        """The config when it is valid, and the problems by field."""
        config, problems = form.validate(dict(zip(FIELDS, values, strict=True)))
        return (None if problems else config), problems

    def validate_only(language: str, *values: Any) -> list[Any]:
        return show(language, check(values)[1])

    for key in FIELDS:
        event = widgets[key].blur if isinstance(widgets[key], _TYPED) else widgets[key].input
        event(validate_only, inputs, checked_outputs, show_progress="hidden")

    def show_command(language: str, *values: Any) -> list[Any]:
        config, problems = check(values)
        if config is None:
            return [*show(language, problems), gr.update(), gr.update()]
        out = Path(config.get("output_dir") or form.schema_field("output_dir").default)
        command = f"tuneforge train {shlex.quote(str(runner.config_path(out)))}"
        return [
            *show(language, {}),
            gr.update(value=form.config_yaml(config), visible=True),
            gr.update(value=command, visible=True),
        ]

    buttons["preview"].click(show_command, inputs, [*checked_outputs, yaml_box, command_box])

    def show_plan(language: str, *values: Any) -> list[Any]:
        config, problems = check(values)
        if config is None:
            return [*show(language, problems), gr.update()]
        try:
            text = tuneforge.plan(config).text()
        except UserError as exc:
            return [*show(language, form.error_by_field(exc, config.get("stage"))), gr.update()]
        return [*show(language, {}), gr.update(value=text, visible=True)]

    buttons["plan"].click(show_plan, inputs, [*checked_outputs, plan_box])

    def starter(resume: bool) -> Callable[..., list[Any]]:
        def start(language: str, *values: Any) -> list[Any]:
            config, problems = check(values)
            if config is None:
                return show(language, problems)
            try:
                job = runner.start(config, resume=resume)
            except UserError as exc:
                return show(language, form.error_by_field(exc, config.get("stage")))
            return show(
                language,
                {},
                texts("msg.resumed" if resume else "msg.started", language, path=job.output_dir),
            )

        return start

    buttons["start"].click(starter(False), inputs, checked_outputs)
    buttons["resume"].click(starter(True), inputs, checked_outputs)
    buttons["stop"].click(
        lambda language: texts("msg.stopping" if runner.stop() else "msg.not_running", language),
        lang,
        message,
    )

    def save_config(language: str, path: str, *values: Any) -> list[Any]:
        config, problems = check(values)
        if config is None:
            return show(language, problems)
        if not path.strip():
            return show(language, {}, texts("msg.no_path", language))
        target = Path(path.strip()).expanduser()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(form.config_yaml(config), encoding="utf-8")
        return show(language, {}, texts("msg.saved", language, path=target))

    save.click(save_config, [lang, config_path, *inputs[1:]], checked_outputs)

    def load_config_file(language: str, path: str) -> list[Any]:
        unchanged = [gr.update() for _ in FIELDS]
        if not path.strip():
            return [*unchanged, *show(language, {}, texts("msg.no_path", language))]
        try:
            cfg = load_config(Path(path.strip()).expanduser())
        except UserError as exc:
            return [*unchanged, *show(language, {"": exc.lines})]
        values = form.from_config(cfg.flat(only_set=True))
        return [
            *(values[key] for key in FIELDS),
            *show(language, {}, texts("msg.loaded", language, path=path.strip())),
        ]

    dataset_dir, dataset = widgets["dataset_dir"], widgets["dataset"]
    refresh = (_refresh_datasets, dataset_dir, [dataset, slots["dataset_dir"]])
    for event in (dataset_dir.blur, dataset_dir.submit):
        event(*refresh, show_progress="hidden")
    load.click(
        load_config_file, [lang, config_path], [*(widgets[key] for key in FIELDS), *checked_outputs]
    ).then(*refresh)
    for event in (dataset.change, widgets["stage"].change):
        event(
            _preview_samples, [dataset_dir, dataset, widgets["stage"]], [preview, slots["dataset"]]
        )
    widgets["stage"].change(stage_rows, widgets["stage"], stage_blocks, show_progress="hidden")


def _add_stage_rows(
    texts: Texts, defaults: dict[str, Any], widgets: dict[str, Any], slots: dict[str, Any]
) -> list[Any]:
    """The preference keys, below the stage that uses them: the section, then one row per
    group of stages (as `stage_rows` shows them)."""
    shown = _shown(defaults["stage"])
    with gr.Column(visible=shown[0], elem_id="tf-section-preference") as section:
        texts.bind(gr.Markdown, value="section.preference")
        rows = []
        for (_, keys), visible in zip(STAGE_ROWS, shown[1:], strict=True):
            with gr.Row(visible=visible) as row:
                _add_fields(texts, keys, defaults, widgets, slots)
            rows.append(row)
    return [section, *rows]


def stage_rows(stage: str | None) -> list[Any]:
    """Show the section and the rows of keys that `stage` uses, hide the others."""
    return [gr.update(visible=visible) for visible in _shown(stage)]


def _shown(stage: str | None) -> list[bool]:
    rows = [form.applies(keys[0], stage) for _, keys in STAGE_ROWS]
    return [any(rows), *rows]


def _add_fields(
    texts: Texts,
    keys: Sequence[str],
    defaults: dict[str, Any],
    widgets: dict[str, Any],
    slots: dict[str, Any],
) -> None:
    for key in keys:
        make, kwargs, choices = _widget(key)
        widgets[key], slots[key] = field(
            texts, key, make, labelled_choices=choices, value=defaults[key], **kwargs
        )


def _widget(key: str) -> tuple[Callable[..., Any], dict[str, Any], Choices | None]:
    """The input for a form key: from its type in the config schema, with a few choices that
    come from the library (model aliases and local folders, templates, datasets)."""
    if key == "model_name_or_path":
        return gr.Dropdown, {"choices": sources.model_choices(), "allow_custom_value": True}, None
    if key == "dataset":
        names = _names_or_none(str(form.schema_field("dataset_dir").default)) or []
        return (
            gr.Dropdown,
            {"choices": names, "multiselect": True, "allow_custom_value": True},
            None,
        )
    if key == "template":
        return (
            gr.Dropdown,
            {},
            [("choice.template.none", ""), *((None, name) for name in NAMED_TEMPLATES)],
        )
    if key == PRECISION:
        return gr.Radio, {}, [(f"choice.precision.{name}", name) for name in PRECISIONS]
    if key == EXTRA:
        return gr.Textbox, {"lines": 3, "placeholder": "early_stopping_steps: 3"}, None
    allowed = form.literal_choices(key)
    if allowed:
        empty: list[tuple[str | None, Any]] = (
            [(f"choice.{key}.none", "")] if key in EMPTY_CHOICE else []
        )
        choices = [*empty, *((None, value) for value in allowed)]
        return (gr.Radio if len(choices) <= 4 else gr.Dropdown), {}, choices
    if form.schema_field(key).annotation is bool:
        return gr.Checkbox, {}, None
    return gr.Textbox, {}, None  # numbers too: empty means "not set", text is parsed as typed


def _names_or_none(dataset_dir: str) -> list[str] | None:
    try:
        return sources.dataset_names(dataset_dir)
    except UserError:
        return None


def _refresh_datasets(dataset_dir: str) -> list[Any]:
    """The dataset choices of the folder, or why there are none."""
    try:
        names = sources.dataset_names(dataset_dir.strip())
    except UserError as exc:
        return [gr.update(choices=[]), messages_update(exc.lines)]
    return [gr.update(choices=names), messages_update([])]  # validation names unknown ones


def _preview_samples(dataset_dir: str, names: list[str] | None, stage: str) -> list[Any]:
    if not names:
        return [gr.update(visible=False), messages_update([])]
    try:
        columns, rows = sources.preview_rows(dataset_dir.strip(), names, stage)
    except UserError as exc:
        return [gr.update(visible=False), messages_update(exc.lines)]
    return [gr.update(value=pd.DataFrame(rows, columns=columns), visible=True), messages_update([])]


def _lines(lines: Sequence[str]) -> str:
    return "\n\n".join(map(plain, lines))


def _accordion(**props: Any) -> gr.Accordion:
    return gr.Accordion(open=False, **props)


def _plan_box(**props: Any) -> gr.Textbox:
    return gr.Textbox(
        visible=False, interactive=False, lines=12, max_lines=40, elem_id="tf-plan-report", **props
    )


def _path_box(**props: Any) -> gr.Textbox:
    return gr.Textbox(value="tuneforge_webui.yaml", scale=3, elem_id="tf-config-path", **props)


def _code(language: str, elem_id: str) -> Callable[..., gr.Code]:
    return bound_factory(
        gr.Code, language=language, interactive=False, elem_id=elem_id, visible=False
    )
