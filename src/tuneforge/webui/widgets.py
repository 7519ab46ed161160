"""Components whose words follow the page language, and form fields with a message slot.

Every label, hint, button text and choice label is created through `Texts`, which remembers
the translation key of each; switching the language returns one update per component.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from tuneforge.webui.locales import text

# (translation key, value); a None key shows the value itself (a number, a template name).
Choices = Sequence[tuple[str | None, Any]]

# gradio shows the tqdm bars of a handler given this as its `progress` default (model loading,
# generation, export).
TRACK_TQDM = gr.Progress(track_tqdm=True)


class Texts:
    """The translatable components of one page, built in the page's starting language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self._bound: list[tuple[Any, dict[str, Any]]] = []

    def __call__(self, key: str, lang: str | None = None, **values: Any) -> str:
        words = text(key, lang or self.lang)
        return words.format(**values) if values else words

    def bind(self, make: Callable[..., Any], /, **props: Any) -> Any:
        """Create a component with its words in the starting language and remember them:
        each prop is a translation key (label, info, value, placeholder) or, for choices,
        a list of (translation key, value)."""
        component = make(
            **{name: self._render(name, key, self.lang) for name, key in props.items()}
        )
        self._bound.append((component, props))
        return component

    def _render(self, name: str, key: Any, lang: str) -> Any:
        if name == "choices":
            return [
                (str(value) if label is None else self(label, lang), value) for label, value in key
            ]
        return self(key, lang)

    @property
    def components(self) -> list[Any]:
        return [component for component, _ in self._bound]

    def relabel(self, lang: str) -> list[Any]:
        """One update per bound component, in `lang`."""
        return [
            gr.update(**{name: self._render(name, key, lang) for name, key in props.items()})
            for _, props in self._bound
        ]


def bound_factory(make: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    """`make` with some keyword arguments given now (the rest come from `Texts.bind`)."""
    return lambda **props: make(**fixed, **props)


def field(
    texts: Texts,
    key: str,
    make: Callable[..., Any],
    *,
    labelled_choices: Choices | None = None,
    **kwargs: Any,
) -> tuple[Any, Any]:
    """A form field labelled ``field.<key>``, hinted ``hint.<key>``, with a message slot under
    it for what validation says about it. `labelled_choices` are fixed choices whose labels
    follow the language; choices that change while the page is open go in `kwargs`."""
    props: dict[str, Any] = {"label": f"field.{key}", "info": f"hint.{key}"}
    if labelled_choices is not None:
        props["choices"] = labelled_choices
    kwargs.setdefault("elem_id", f"tf-{key}")
    with gr.Column(min_width=220, scale=kwargs.pop("scale", 1)):
        widget = texts.bind(bound_factory(make, **kwargs), **props)
        message = gr.Markdown(
            visible=False, elem_id=f"{kwargs['elem_id']}-error", elem_classes=["tf-field-error"]
        )
    return widget, message


def messages_update(lines: Sequence[str], *, warning: bool = True) -> Any:
    """The message slot showing `lines` (hidden when there are none); a warning is marked."""
    mark = "⚠ " if warning else ""
    return gr.update(
        value="\n\n".join(f"{mark}{plain(line)}" for line in lines), visible=bool(lines)
    )


def plain(line: str) -> str:
    """Library messages are plain text: keep Markdown from reading ``*`` or ``_`` in them."""
    return re.sub(r"([\\`*_{}\[\]<>#|~])", r"\\\1", line)


def button(elem_id: str, variant: str = "secondary") -> Callable[..., Any]:
    """A button factory for `Texts.bind` (the text comes from the translation)."""
    return bound_factory(gr.Button, variant=variant, elem_id=f"tf-{elem_id}")


def table(elem_id: str, **kwargs: Any) -> Callable[..., Any]:
    """A read-only table, hidden until it has rows."""
    return bound_factory(
        gr.Dataframe, visible=False, interactive=False, wrap=True, elem_id=f"tf-{elem_id}", **kwargs
    )
