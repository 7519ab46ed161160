"""The Export tab: merge a run's adapter into its base model and write a Hugging Face folder
or a GGUF file with `tuneforge.export`, which checks the result against the original."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

import tuneforge
from tuneforge.errors import UserError
from tuneforge.exporting.pipeline import FORMATS, QUANTS
from tuneforge.webui import sources
from tuneforge.webui.runner import TrainingRunner
from tuneforge.webui.widgets import TRACK_TQDM, Texts, button, field, messages_update

DEFAULT_QUANT = "f16"


def build_export_tab(texts: Texts, lang: gr.Radio, runner: TrainingRunner) -> None:
    with gr.Row():
        run, run_slot = field(
            texts,
            "run",
            gr.Dropdown,
            allow_custom_value=True,
            choices=None,
            value=None,
            elem_id="tf-export-run",
            scale=3,
        )
        fmt, _ = field(
            texts,
            "format",
            gr.Radio,
            labelled_choices=[(None, name) for name in FORMATS],
            value=FORMATS[0],
        )
        quant, _ = field(
            texts,
            "quant",
            gr.Dropdown,
            labelled_choices=[(None, q) for q in QUANTS],
            value=DEFAULT_QUANT,
            interactive=False,
        )
    with gr.Row():
        out, _ = field(texts, "export_out", gr.Textbox, value="", scale=3)
        overwrite, _ = field(texts, "overwrite", gr.Checkbox, value=False)
    start = texts.bind(button("export", "primary"), value="button.export")
    result = texts.bind(_result_box, label="out.export")

    run.focus(
        lambda: gr.update(choices=sources.run_choices(runner.output_dirs)),
        None,
        run,
        show_progress="hidden",
    )

    def suggest(folder: str | None, kind: str) -> list[Any]:
        """A destination beside the run, and the weight type only where it applies."""
        target = default_destination(folder, kind) if folder else gr.update()
        return [target, gr.update(interactive=kind == "gguf")]

    for event in (run.change, fmt.change):
        event(suggest, [run, fmt], [out, quant], show_progress="hidden")

    def export(
        language: str,
        folder: str | None,
        kind: str,
        weights: str,
        target: str,
        replace: bool,
        progress: gr.Progress = TRACK_TQDM,
    ) -> list[Any]:
        if not folder:
            return [messages_update([texts("msg.pick_run", language)]), gr.update()]
        progress(0, desc=texts("progress.merging", language))
        try:
            done = tuneforge.export(
                folder,
                target.strip() or default_destination(folder, kind),
                fmt=kind,
                quant=weights if kind == "gguf" else None,
                overwrite=replace,
            )
        except UserError as exc:
            return [messages_update(exc.lines), gr.update()]
        verdict = "msg.exported" if done.ok else "msg.export_mismatch"
        lines = [texts(verdict, language, path=done.path), *map(str, done.checks)]
        if done.modelfile is not None:
            lines.append(f"ollama create {done.path.stem} -f {done.modelfile}")
        return [messages_update([]), gr.update(value="\n".join(lines), visible=True)]

    start.click(export, [lang, run, fmt, quant, out, overwrite], [run_slot, result])


def default_destination(folder: str, kind: str) -> str:
    """``<run>-merged`` (a folder) or ``<run>.gguf`` beside the run."""
    path = Path(folder)
    return str(path.with_name(path.name + (".gguf" if kind == "gguf" else "-merged")))


def _result_box(**props: Any) -> gr.Textbox:
    return gr.Textbox(
        visible=False, interactive=False, lines=6, elem_id="tf-export-result", **props
    )
