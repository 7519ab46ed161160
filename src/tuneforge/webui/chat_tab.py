"""The Chat tab: load the base model, a run's adapter or a merged export through the one
generation path (`tuneforge.infer.chat`), talk to it with streamed replies, unload it.

With tools (a JSON list, pasted or in a file) a reply that is a call is shown as a call, and
the user answers it with the tool's result; the conversation, calls and results included, is
kept as the library's messages (`tuneforge.infer.tool_chat`, as ``tuneforge chat --tools``)."""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from tuneforge.config import GenerationArgs, RunConfig
from tuneforge.data import Message
from tuneforge.errors import UserError
from tuneforge.infer.chat import ChatModel, generation_settings, load_chat_model
from tuneforge.infer.resolve import resolve_model
from tuneforge.infer.tool_chat import (
    ReplyStream,
    call_text,
    observation,
    pending_calls,
    read_tools,
)
from tuneforge.webui import form, sources
from tuneforge.webui.locales import text as translate
from tuneforge.webui.runner import TrainingRunner
from tuneforge.webui.widgets import Texts, bound_factory, button, field, messages_update

# A turn of the page's chat history, as gradio shows it.
ChatTurn = dict[str, str]
# What sending a message or a tool result updates: the page's turns, the conversation, the
# box it was typed in, the status line.
Update = tuple[list[ChatTurn], list[Message], str, Any]


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
            conversation = gr.State([])  # the library's messages: calls and results included
            message = texts.bind(_message_box, label="field.message", info="hint.message")
            with gr.Row():
                send = texts.bind(button("send", "primary"), value="button.send")
                clear = texts.bind(button("clear"), value="button.clear")
            with gr.Row():
                result = texts.bind(
                    bound_factory(gr.Textbox, lines=1, elem_id="tf-tool-result", scale=4),
                    label="field.tool_result",
                    info="hint.tool_result",
                )
                result_button = texts.bind(button("send-result"), value="button.send_result")
        with gr.Column(scale=1):
            system, _ = field(texts, "system", gr.Textbox, lines=3, value="")
            tools, _ = field(texts, "tools", gr.Textbox, lines=3, value="")
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

    def unload_model(language: str) -> tuple[Any, list[ChatTurn], list[Message]]:
        holder.unload()
        return texts("msg.model_unloaded", language), [], []

    unload.click(unload_model, lang, [status, chatbot, conversation])

    settings = [system, tools, temperature, top_p, max_new, penalty]
    for event in (send.click, message.submit):
        event(
            functools.partial(send_message, holder),
            [lang, message, chatbot, conversation, *settings],
            [chatbot, conversation, message, status],
        )
    for event in (result_button.click, result.submit):
        event(
            functools.partial(send_result, holder),
            [lang, result, chatbot, conversation, *settings],
            [chatbot, conversation, result, status],
        )
    clear.click(lambda: ([], [], ""), None, [chatbot, conversation, message])


def send_message(
    holder: ChatHolder,
    language: str,
    text: str,
    turns: list[ChatTurn],
    messages: list[Message],
    *settings: Any,
) -> Iterator[Update]:
    """The user's message and the model's reply, streamed."""
    if not text.strip():
        yield turns, messages, "", gr.update()
        return
    try:
        replies = _replier(holder, language, *settings)
    except UserError as exc:
        yield turns, messages, text, messages_update(exc.lines)
        return
    said: Message = {"role": "user", "content": text}
    for now, page in replies([*messages, said], [*turns, {"role": "user", "content": text}]):
        yield page, now, "", gr.update()


def send_result(
    holder: ChatHolder,
    language: str,
    result: str,
    turns: list[ChatTurn],
    messages: list[Message],
    *settings: Any,
) -> Iterator[Update]:
    """A tool's result, for the first call still open; once every call of the turn has its
    result, the model's next reply, streamed."""
    try:
        replies = _replier(holder, language, *settings)
    except UserError as exc:
        yield turns, messages, result, messages_update(exc.lines)
        return
    if not pending_calls(messages):
        yield turns, messages, result, messages_update([translate("msg.no_call", language)])
        return
    answered = [*messages, observation(result.strip())]
    shown = [*turns, result_turn(result.strip(), language)]
    if pending_calls(answered):  # other calls of the turn wait for their results
        yield shown, answered, "", gr.update()
        return
    for now, page in replies(answered, shown):
        yield page, now, "", gr.update()


def _replier(
    holder: ChatHolder,
    language: str,
    system_prompt: str,
    tools: str,
    temp: float,
    share: float,
    limit: float,
    repeat: float,
) -> Callable[[list[Message], list[ChatTurn]], Iterator[tuple[list[Message], list[ChatTurn]]]]:
    """`continue_chat` with the loaded model and what the form says, or a `UserError`."""
    loaded = holder.loaded
    if loaded is None:
        raise UserError(translate("msg.load_first", language))
    gen = generation_settings(
        loaded.config.generation,
        temperature=temp,
        top_p=share,
        max_new_tokens=int(limit),
        repetition_penalty=repeat,
    )
    return functools.partial(
        continue_chat,
        loaded.model,
        system_prompt=system_prompt,
        gen=gen,
        tools=read_tools(tools),
        language=language,
    )


def continue_chat(
    model: ChatModel,
    messages: list[Message],
    turns: list[ChatTurn],
    *,
    system_prompt: str,
    gen: GenerationArgs,
    tools: Sequence[dict[str, Any]] | None,
    language: str,
) -> Iterator[tuple[list[Message], list[ChatTurn]]]:
    """The model's next reply to `messages`: (conversation, page turns) as it streams, and
    last with the reply added, a call shown as a call."""
    system: list[Message] = [{"role": "system", "content": system_prompt}]
    stream = ReplyStream(
        model, [*system, *messages] if system_prompt.strip() else messages, gen, tools
    )
    answer: ChatTurn = {"role": "assistant", "content": ""}
    for piece in stream:
        answer["content"] += piece
        yield messages, [*turns, answer]
    yield [*messages, *stream.messages], [*turns, reply_turn(stream, language)]


def reply_turn(stream: ReplyStream, language: str) -> ChatTurn:
    """A finished reply as the page shows it: text, or its calls as code, or, for a call that
    could not be read, the text the model wrote and why."""
    parsed = stream.reply
    if parsed.calls:
        calls = "\n".join(call_text(call) for call in parsed.calls)
        lead = f"{parsed.content}\n\n" if parsed.content else ""
        return {"role": "assistant", "content": f"{lead}```\n{calls}\n```"}
    if parsed.error:
        note = translate("msg.bad_call", language).format(error=parsed.error)
        return {"role": "assistant", "content": f"```\n{stream.text.strip()}\n```\n\n{note}"}
    return {"role": "assistant", "content": stream.text.strip()}


def result_turn(result: str, language: str) -> ChatTurn:
    """A tool's result as the page shows it: marked, as code."""
    return {
        "role": "user",
        "content": f"{translate('out.tool_result', language)}\n```\n{result}\n```",
    }


def _chatbot(**props: Any) -> gr.Chatbot:
    return gr.Chatbot(elem_id="tf-chatbot", height=420, **props)


def _message_box(**props: Any) -> gr.Textbox:
    return gr.Textbox(elem_id="tf-message", lines=1, **props)
