"""Chat templates: the one path that turns messages into text and tokens, and the loss mask.

Training, evaluation, chat and the API all render through `Template`, so what was trained is
what is served. Named templates are Jinja chat templates like the ones tokenizers carry, and
everything is rendered by ``tokenizer.apply_chat_template`` — one mechanism for both.

The assistant spans are found by rendering prefixes: the text of ``messages[:i]`` with a
generation prompt must be a prefix of the text of ``messages[:i + 1]``, and what the assistant
turn adds is trained up to and including its stop word. Each piece is tokenised on its own, so
the prompt tokens seen in training are exactly those `encode_prompt` gives at inference.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

from tuneforge.config.choices import TOOL_FORMAT_NAMES
from tuneforge.data.formats import Message
from tuneforge.data.tools import (
    HERMES,
    JSON_CALLS,
    TOOL_FORMATS,
    ToolFormat,
    calls_of,
    openai_tools,
)
from tuneforge.errors import ConfigError
from tuneforge.messages import did_you_mean

IGNORE_INDEX = -100

_CHATML = r"""
{%- for message in messages -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""

_QWEN = r"""
{%- if messages and messages[0]['role'] == 'system' -%}
{%- set system = messages[0]['content'] -%}{%- set turns = messages[1:] -%}
{%- else -%}
{%- set system = 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' -%}
{%- set turns = messages -%}
{%- endif -%}
{{- '<|im_start|>system\n' + system -}}
{%- if tools -%}
{{- '\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n'
    + 'You are provided with function signatures within <tools></tools> XML tags:\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' + tool | tojson -}}{%- endfor -%}
{{- '\n</tools>\n\nFor each function call, return a json object with function name and '
    + 'arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n'
    + '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' -}}
{%- endif -%}
{{- '<|im_end|>\n' -}}
{%- for message in turns -%}
{%- if message['role'] == 'tool' -%}
{{- '<|im_start|>user\n<tool_response>\n' + message['content']
    + '\n</tool_response><|im_end|>\n' -}}
{%- else -%}
{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\n' -}}{%- endif -%}
"""

_LLAMA3 = r"""
{{- bos_token -}}
{%- for message in messages -%}
{%- set role = 'ipython' if message['role'] == 'tool' else message['role'] -%}
{{- '<|start_header_id|>' + role + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' -}}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' -}}
{%- endif -%}
"""

_ALPACA = r"""
{%- if messages and messages[0]['role'] == 'system' -%}
{{- messages[0]['content'] + '\n\n' -}}{%- set turns = messages[1:] -%}
{%- else -%}
{{- 'Below is an instruction that describes a task. '
    + 'Write a response that appropriately completes the request.\n\n' -}}
{%- set turns = messages -%}
{%- endif -%}
{%- for message in turns -%}
{%- if message['role'] == 'assistant' -%}
{{- message['content'] + eos_token + '\n\n' -}}
{%- else -%}
{{- '### Instruction:\n' + message['content'] + '\n\n### Response:\n' -}}
{%- endif -%}
{%- endfor -%}
"""

_DEFAULT = r"""
{%- for message in messages -%}
{%- if message['role'] == 'system' -%}{{- 'System: ' + message['content'] + '\n' -}}
{%- elif message['role'] == 'assistant' -%}
{{- 'Assistant: ' + message['content'] + eos_token + '\n' -}}
{%- elif message['role'] == 'tool' -%}{{- 'Observation: ' + message['content'] + '\n' -}}
{%- else -%}{{- 'Human: ' + message['content'] + '\n' -}}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}{{- 'Assistant:' -}}{%- endif -%}
"""

_EMPTY = r"""
{%- for message in messages -%}
{%- if message['role'] == 'assistant' -%}{{- message['content'] + eos_token -}}
{%- else -%}{{- message['content'] -}}
{%- endif -%}
{%- endfor -%}
"""


@dataclass(frozen=True)
class NamedTemplate:
    """A built-in Jinja chat template, the words that end an assistant turn (besides eos) and
    how its model family writes tool calls (`tools.TOOL_FORMATS`)."""

    source: str
    stop_words: tuple[str, ...] = ()
    tool_format: str = "hermes"


NAMED_TEMPLATES: Mapping[str, NamedTemplate] = MappingProxyType(
    {
        "chatml": NamedTemplate(_CHATML.strip(), ("<|im_end|>",)),
        "qwen": NamedTemplate(_QWEN.strip(), ("<|im_end|>",)),
        "llama3": NamedTemplate(_LLAMA3.strip(), ("<|eot_id|>",), "json"),
        "alpaca": NamedTemplate(_ALPACA.strip()),
        "default": NamedTemplate(_DEFAULT.strip()),
        "empty": NamedTemplate(_EMPTY.strip()),
    }
)

# Conversation roles -> the role names chat templates expect.
TEMPLATE_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "system": "system",
        "user": "user",
        "assistant": "assistant",
        "observation": "tool",
        "function": "assistant",
    }
)

_PROBE: tuple[Message, ...] = (
    Message(role="system", content="You are a careful assistant."),
    Message(role="user", content="What is 2 + 2?"),
    Message(role="assistant", content="2 + 2 = 4."),
    Message(role="user", content="And 3 + 3?"),
    Message(role="assistant", content="3 + 3 = 6."),
)


class Segment(NamedTuple):
    """A run of tokens that is either one assistant turn (trained) or the text between."""

    ids: list[int]
    assistant: bool


@dataclass(frozen=True, eq=False)
class Template:
    """A chat template bound to a tokenizer. Build it with `get_template`."""

    name: str | None
    source: str = field(repr=False)
    stop_words: tuple[str, ...]
    tokenizer: Any = field(repr=False)
    default_system: str | None = None
    tool_format: ToolFormat = HERMES

    @property
    def label(self) -> str:
        return f"template '{self.name}'" if self.name else "the tokenizer's chat template"

    @property
    def renders_tools(self) -> bool:
        """Whether the Jinja source lists `tools` itself; otherwise `tool_format` writes them
        into the system prompt (the documented default for templates without tool syntax)."""
        return "tools" in self.source

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        """Ids of the stop words that are single tokens of this tokenizer."""
        ids = [self.tokenizer.encode(word, add_special_tokens=False) for word in self.stop_words]
        return tuple(dict.fromkeys(i[0] for i in ids if len(i) == 1))

    def chat_messages(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> list[dict[str, str]]:
        """The messages as the Jinja template sees them: default system added, roles mapped,
        calls written in the family's format, and (for a template that does not list tools
        itself) the tools in the system prompt."""
        out = [
            {
                "role": TEMPLATE_ROLES[m["role"]],
                "content": (
                    self.tool_format.render_calls(calls_of(m["content"]))
                    if m["role"] == "function"
                    else m["content"]
                ),
            }
            for m in messages
        ]
        if self.default_system and not (out and out[0]["role"] == "system"):
            out.insert(0, {"role": "system", "content": self.default_system})
        if tools and not self.renders_tools:
            listed = self.tool_format.system_text(tools)
            if out and out[0]["role"] == "system":
                out[0] = {"role": "system", "content": out[0]["content"] + "\n\n" + listed}
            else:
                out.insert(0, {"role": "system", "content": listed})
        return out

    def render(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool = False,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        return self._render(self.chat_messages(messages, tools), add_generation_prompt, tools)

    def encode_prompt(
        self, messages: Sequence[Message], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        """Token ids of a conversation ending in a user turn, plus the generation prompt."""
        segments = self.encode_segments(messages, tools=tools, add_generation_prompt=True)
        return [token for segment in segments for token in segment.ids]

    def encode_segments(
        self,
        messages: Sequence[Message],
        *,
        tools: list[dict[str, Any]] | None = None,
        add_generation_prompt: bool = False,
    ) -> list[Segment]:
        """The conversation as token runs, each piece tokenised on its own (see module doc)."""
        pieces = self._pieces(self.chat_messages(messages, tools), tools, add_generation_prompt)
        if not pieces:
            return []
        ids = self.tokenizer([text for text, _ in pieces], add_special_tokens=False)["input_ids"]
        return [Segment(list(i), assistant) for i, (_, assistant) in zip(ids, pieces, strict=True)]

    def _pieces(
        self,
        messages: list[dict[str, str]],
        tools: list[dict[str, Any]] | None,
        add_generation_prompt: bool,
    ) -> list[tuple[str, bool]]:
        pieces: list[tuple[str, bool]] = []
        emitted = ""
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            head = self._render(messages[:i], True, tools)
            full = self._render(messages[: i + 1], False, tools)
            self._check_prefix(emitted, head, i)
            self._check_prefix(head, full, i)
            span = full[len(head) :]
            end = self._turn_end(span)
            pieces += [(head[len(emitted) :], False), (span[:end], True)]
            emitted = head + span[:end]
        final = self._render(messages, add_generation_prompt, tools)
        self._check_prefix(emitted, final, len(messages) - 1)
        pieces.append((final[len(emitted) :], False))
        return [(text, assistant) for text, assistant in pieces if text]

    def _render(
        self,
        messages: list[dict[str, str]],
        add_generation_prompt: bool,
        tools: list[dict[str, Any]] | None,
    ) -> str:
        try:
            return self.tokenizer.apply_chat_template(
                messages,
                tools=openai_tools(tools) if tools and self.renders_tools else None,
                chat_template=self.source,
                tokenize=False,
                add_generation_prompt=add_generation_prompt,
            )
        except Exception as err:  # jinja raises several types, raise_exception() included
            raise ConfigError(
                f"{self.label} cannot render this conversation ({type(err).__name__}: {err})"
            ) from None

    def _check_prefix(self, prefix: str, text: str, index: int) -> None:
        if not text.startswith(prefix):
            raise ConfigError(
                f"{self.label} is not prefix-stable: adding message {index + 1} changes how "
                f"earlier messages render, so the assistant turns cannot be found for the loss "
                f"mask; use another template"
            )

    def _turn_end(self, span: str) -> int:
        """Where the trained part of an assistant turn ends: after its last stop word."""
        ends = [span.rfind(word) + len(word) for word in self.stop_words if word in span]
        if not ends:
            raise ConfigError(
                f"{self.label}: an assistant turn does not end with a stop word "
                f"({', '.join(map(repr, self.stop_words))}), so a model trained with it would "
                f"never learn to stop"
            )
        return max(ends)


def label_segments(
    segments: Sequence[Segment], *, train_on_prompt: bool = False, mask_history: bool = False
) -> tuple[list[int], list[int]]:
    """Concatenate segments; label the assistant turns (only the last with `mask_history`),
    and the prompt text too with `train_on_prompt` (after the last-but-one turn with both)."""
    turns = [k for k, segment in enumerate(segments) if segment.assistant]
    last = turns[-1] if turns else len(segments)
    start = turns[-2] + 1 if mask_history and len(turns) > 1 else 0
    input_ids: list[int] = []
    labels: list[int] = []
    for k, segment in enumerate(segments):
        if segment.assistant:
            trained = not mask_history or k == last
        else:
            trained = train_on_prompt and k >= start
        input_ids += segment.ids
        labels += segment.ids if trained else [IGNORE_INDEX] * len(segment.ids)
    return input_ids, labels


def get_template(
    name: str | None,
    tokenizer: Any,
    default_system: str | None = None,
    tool_format: str | None = None,
) -> Template:
    """The named template, or (name None) the tokenizer's own; checked on a probe conversation.
    `tool_format` (qwen/hermes, llama3/json) overrides how the template's family writes calls."""
    eos = (tokenizer.eos_token,) if tokenizer.eos_token else ()
    if name is None:
        source = _own_template(tokenizer)
        if source is None:
            raise ConfigError(
                f"template: the tokenizer has no chat template of its own; set "
                f"template to one of {', '.join(NAMED_TEMPLATES)}"
            )
        stop_words = _own_turn_end(source, tokenizer) + eos
        chosen = own_tool_format(source)
    elif name in NAMED_TEMPLATES:
        source = NAMED_TEMPLATES[name].source
        stop_words = NAMED_TEMPLATES[name].stop_words + eos
        chosen = TOOL_FORMATS[NAMED_TEMPLATES[name].tool_format]
    else:
        raise ConfigError(
            f"template: unknown template '{name}'"
            f"{did_you_mean(name, NAMED_TEMPLATES) or ';'} choose one of "
            f"{', '.join(NAMED_TEMPLATES)}, or leave it empty for the "
            f"tokenizer's own"
        )
    if tool_format is not None:
        chosen = TOOL_FORMATS[TOOL_FORMAT_NAMES[tool_format]]
    template = Template(
        name, source, tuple(dict.fromkeys(stop_words)), tokenizer, default_system, chosen
    )
    template.encode_segments(_PROBE[1:])  # fail now, not mid-dataset; some refuse a system
    return template


def own_tool_format(source: str) -> ToolFormat:
    """The call format a tokenizer's own template uses: Llama 3.1's JSON where the template
    speaks of ``parameters`` and ``ipython``, else ``<tool_call>`` tags (also the default for a
    template with no tool syntax, such as SmolLM2's)."""
    if "<tool_call>" not in source and "ipython" in source and "parameters" in source:
        return JSON_CALLS
    return HERMES


def tool_template_warning(template: Template) -> str | None:
    """A line for logs when tools are rendered by tuneforge's default, not the template."""
    if template.renders_tools:
        return None
    return (
        f"{template.label} has no tool syntax of its own: tools are listed in the system "
        f"prompt and calls written as {template.tool_format.call_marker} blocks "
        f"({template.tool_format.name} format); chat and the API render them the same way"
    )


def _own_template(tokenizer: Any) -> str | None:
    source = getattr(tokenizer, "chat_template", None)
    if isinstance(source, dict):
        source = source.get("default")
    return source or None


def _own_turn_end(source: str, tokenizer: Any) -> tuple[str, ...]:
    """The special token that closes an assistant turn in the tokenizer's template, if any."""
    marker = "The answer is four."
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": marker}],
            chat_template=source,
            tokenize=False,
        )
    except Exception:  # a template that cannot render this is reported by the probe later
        return ()
    after = text[text.rfind(marker) + len(marker) :]
    special = {str(t) for t in tokenizer.all_special_tokens} | {
        str(t)
        for t in getattr(tokenizer, "added_tokens_decoder", {}).values()
        if getattr(t, "special", False)
    }
    found = [(after.find(token), token) for token in special if token and token in after]
    return (min(found)[1],) if found else ()


def template_mismatch(template: Template, tokenizer: Any) -> str | None:
    """A warning line when `template` renders differently from the tokenizer's own template
    (or, for a tokenizer without one, ends turns with a word that is not one of its tokens)."""
    if template.name is None:
        return None
    own = _own_template(tokenizer)
    if own is None:
        end = template.stop_words[0]
        if len(tokenizer.encode(end, add_special_tokens=False)) > 1:
            return (
                f"{template.label} ends turns with {end!r}, which is not a single token of "
                f"this tokenizer; a model never trained on it may not learn to stop"
            )
        return None
    for sample in (_PROBE, _PROBE[1:]):
        ours = template.render(sample)
        theirs = tokenizer.apply_chat_template(
            template.chat_messages(sample), chat_template=own, tokenize=False
        )
        if ours != theirs:
            at = len(os.path.commonprefix([ours, theirs]))
            which, fix = ("conversations", "leave template empty to use the tokenizer's own")
            if sample[0]["role"] != "system":
                which, fix = (
                    "conversations without a system prompt",
                    "set default_system so training and serving agree",
                )
            return (
                f"{template.label} renders {which} differently from the tokenizer's own "
                f"chat template ({ours[at : at + 40]!r} where the tokenizer has "
                f"{theirs[at : at + 40]!r}); {fix}"
            )
    return None
