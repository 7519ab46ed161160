"""The Chat tab: load the base model, a run's adapter or a merged export through the one
generation path (`tuneforge.infer.chat`), talk to it with streamed replies, unload it."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from tuneforge.config import RunConfig
from tuneforge.data import Message
from tuneforge.data.formats import Role
from tuneforge.errors import UserError
from tuneforge.infer.chat import ChatModel, generation_settings, load_chat_model
from tuneforge.infer.resolve import resolve_model
from tuneforge.webui import form, sources
from tuneforge.webui.runner import TrainingRunner
from tuneforge.webui.widgets import Texts, button, field, messages_update

# A turn of the page's chat history, as gradio shows it.
ChatTurn = dict[str, str]


@dataclass
class Loaded:
    model: ChatModel
    config: RunConfig
    name: str


class ChatHolder:
    """The server's one loaded chat model (a model per open tab would not fit in memory)."""

    def __init__(self) -> None:
        self.loaded: Loaded | None = None
        self._lock = threading.Lock()

    def load(self, base: str, adapter: str | None) -> Loaded:
        """The run or export in `adapter` (it names its own base), else the model `base`."""
        model = (
            resolve_model(adapter)
            if adapter
            else resolve_model(overrides={"model_name_or_path": base})
        )
        with self._lock:
            self.loaded = None  # free the previous model before loading the next
            gc.collect()
            self.loaded = Loaded(load_chat_model(model), model.config, adapter or base)
            return self.loaded

    def unload(self) -> None:
        with self._lock:
            self.loaded = None
        gc.collect()


def build_chat_tab(
    texts: Texts, lang: gr.Radio, runner: TrainingRunner, holder: ChatHolder
) -> None:
    with gr.Row():
        base, _ = field(
            texts,
            "model_name_or_path",
            gr.Dropdown,
            allow_custom_value=True,
            choices=None,
            value=form.schema_field("model_name_or_path").default,
            elem_id="tf-chat-model",
        )
        adapter, _ = field(
            texts, "adapter", gr.Dropdown, allow_custom_value=True, choices=None, value=None
        )
    with gr.Row():
        load = texts.bind(button("load-model", "primary"), value="button.load_model")
        unload = texts.bind(button("unload"), value="button.unload")
    status = gr.Markdown(texts("msg.model_unloaded"), elem_id="tf-chat-status")
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = texts.bind(_chatbot, label="out.chat")
            message = texts.bind(_message_box, label="field.message", info="hint.message")
            with gr.Row():
                send = texts.bind(button("send", "primary"), value="button.send")
                clear = texts.bind(button("clear"), value="button.clear")
        with gr.Column(scale=1):
            system, _ = field(texts, "system", gr.Textbox, lines=3, value="")
            temperature, _ = field(
                texts, "temperature", gr.Slider, minimum=0, maximum=2, step=0.05, value=0
            )
            top_p, _ = field(
                texts,
                "top_p",
                gr.Slider,
                minimum=0.05,
                maximum=1,
                step=0.05,
                value=form.schema_field("top_p").default,
            )
            max_new, _ = field(
                texts,
                "max_new_tokens",
                gr.Slider,
                minimum=1,
                maximum=2048,
                step=1,
                value=256,
                elem_id="tf-chat-max_new_tokens",
            )
            penalty, _ = field(
                texts,
                "repetition_penalty",
                gr.Slider,
                minimum=1,
                maximum=2,
                step=0.05,
                value=form.schema_field("repetition_penalty").default,
            )

    def choices() -> list[Any]:
        return [
            gr.update(choices=sources.model_choices()),
            gr.update(choices=["", *sources.run_choices(runner.output_dirs)]),
        ]

    for event in (base.focus, adapter.focus):
        event(choices, None, [base, adapter], show_progress="hidden")

    def load_model(language: str, model: str, folder: str | None) -> Any:
        try:
            loaded = holder.load(model, folder)
        except UserError as exc:
            return messages_update(exc.lines)
        return gr.update(value=texts("msg.model_loaded", language, name=loaded.name), visible=True)

    load.click(load_model, [lang, base, adapter], status)

    def unload_model(language: str) -> tuple[Any, list[ChatTurn]]:
        holder.unload()
        return texts("msg.model_unloaded", language), []

    unload.click(unload_model, lang, [status, chatbot])

    def reply(
        language: str,
        text: str,
        history: list[ChatTurn],
        system_prompt: str,
        temp: float,
        share: float,
        limit: float,
        repeat: float,
    ) -> Iterator[tuple[list[ChatTurn], str, Any]]:
        loaded = holder.loaded
        if loaded is None:
            yield history, text, gr.update(value=texts("msg.load_first", language), visible=True)
            return
        if not text.strip():
            yield history, "", gr.update()
            return
        try:
            gen = generation_settings(
                loaded.config.generation,
                temperature=temp,
                top_p=share,
                max_new_tokens=int(limit),
                repetition_penalty=repeat,
            )
        except UserError as exc:
            yield history, text, messages_update(exc.lines)
            return
        turns: list[ChatTurn] = [
            {"role": m["role"], "content": _plain(m["content"])} for m in history
        ]
        turns.append({"role": "user", "content": text})
        prompt: list[Message] = []
        if system_prompt.strip():
            prompt.append({"role": "system", "content": system_prompt})
        prompt += [{"role": _role(t["role"]), "content": t["content"]} for t in turns]
        answer = {"role": "assistant", "content": ""}
        for piece in loaded.model.stream(prompt, gen):
            answer["content"] += piece
            yield [*turns, answer], "", gr.update()
        answer["content"] = answer["content"].strip()
        yield [*turns, answer], "", gr.update()

    inputs = [lang, message, chatbot, system, temperature, top_p, max_new, penalty]
    for event in (send.click, message.submit):
        event(reply, inputs, [chatbot, message, status])
    clear.click(lambda: ([], ""), None, [chatbot, message])


def _role(name: str) -> Role:
    """The conversation role of a chatbot turn (the page shows only these two)."""
    return "assistant" if name == "assistant" else "user"


def _plain(content: Any) -> str:
    """A chatbot message's text (gradio may hand it back as a list of parts)."""
    if isinstance(content, list):
        return "".join(
            part.get("text", "") if isinstance(part, dict) else str(part) for part in content
        )
    return str(content)


def _chatbot(**props: Any) -> gr.Chatbot:
    return gr.Chatbot(elem_id="tf-chatbot", height=420, **props)


def _message_box(**props: Any) -> gr.Textbox:
    return gr.Textbox(elem_id="tf-message", lines=1, **props)
