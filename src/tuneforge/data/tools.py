"""Tool calls: one structured form for data, templates, generation, the API and evaluation.

A call is a function name and a JSON object of arguments. Datasets write calls in two ways
(LLaMA-Factory's ``function_call`` turns holding ``{"name", "arguments"}`` JSON, OpenAI's
``tool_calls`` list on an assistant message); both become a ``function`` message whose content
is the canonical JSON list of calls, so everything downstream reads one shape. How a call is
written *to the model* depends on the model family (`ToolFormat`): Hermes/Qwen-style
``<tool_call>`` tags, or Llama 3.1's bare JSON. The same format parses the model's output back
into calls, so training, serving and evaluation agree on what a call looks like.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


class ToolError(ValueError):
    """A tool schema or call that cannot be read; the message names what is wrong."""


@dataclass(frozen=True)
class ToolCall:
    """One call: the function's name and its arguments as a JSON object."""

    name: str
    arguments: Mapping[str, Any]

    def arguments_json(self) -> str:
        return json.dumps(dict(self.arguments), ensure_ascii=False)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "arguments": dict(self.arguments)}


@dataclass(frozen=True)
class ParsedReply:
    """A model's reply read by a `ToolFormat`: its text, its calls, and `error` when it tried
    to call (it wrote the format's call marker) but the call is not valid."""

    content: str
    calls: tuple[ToolCall, ...] = ()
    error: str | None = None


def new_call_id() -> str:
    """An id in OpenAI's style (``call_`` + 24 characters), for the API's `tool_calls`."""
    return "call_" + uuid.uuid4().hex[:24]


# ---------------------------------------------------------------------------- schemas


def tool_name(tool: Mapping[str, Any]) -> str | None:
    """The function name of a schema in either form: bare ``{"name", "parameters"}``
    (LLaMA-Factory, glaive) or OpenAI's ``{"type": "function", "function": {...}}``."""
    function = tool.get("function") if tool.get("type") == "function" else tool
    name = function.get("name") if isinstance(function, Mapping) else None
    return name if isinstance(name, str) and name else None


def function_schema(tool: Mapping[str, Any]) -> dict[str, Any]:
    """The bare function schema (name, description, parameters) of either form."""
    inner = tool.get("function") if tool.get("type") == "function" else tool
    return dict(inner) if isinstance(inner, Mapping) else {}


def openai_tools(tools: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Schemas in OpenAI's wrapped form, which chat templates with tool support expect."""
    return [{"type": "function", "function": function_schema(tool)} for tool in tools]


def check_tools(tools: object) -> list[dict[str, Any]]:
    """A list of tool schemas, each with a function name; raises `ToolError` otherwise."""
    if not isinstance(tools, list):
        raise ToolError(" must be a list of tool schemas (JSON objects)")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool_name(tool) is None:
            raise ToolError(
                f"[{i}] is not a tool schema: expected an object with a 'name' "
                f"(or OpenAI's {{'type': 'function', 'function': {{'name': ...}}}})"
            )
    return tools


# ---------------------------------------------------------------------------- calls in data


def read_calls(
    value: object, tools: Sequence[Mapping[str, Any]] | None, *, check_names: bool = True
) -> list[ToolCall]:
    """Calls as data writes them: a JSON text or object ``{"name", "arguments"}``, or a list
    of them; ``arguments`` may be an object or a JSON text of one (OpenAI's form). Each name
    must be one of `tools`. Raises `ToolError` naming what is wrong."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise ToolError(f"is not valid JSON ({err.msg} at character {err.pos})") from None
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ToolError("holds no call")
    calls = [
        _call(item, f"[{i}]" if isinstance(value, list) else "") for i, item in enumerate(items)
    ]
    names = {tool_name(tool) for tool in tools or ()}
    for call in calls if check_names else ():
        if call.name not in names:
            known = ", ".join(sorted(n for n in names if n)) or "none: the row has no tools"
            raise ToolError(f"calls '{call.name}', which is not in the row's tools ({known})")
    return calls


def _call(item: object, where: str) -> ToolCall:
    if (
        isinstance(item, Mapping)
        and "name" not in item
        and isinstance(item.get("function"), Mapping)
    ):
        item = item["function"]  # an OpenAI tool_calls entry
    if not isinstance(item, Mapping):
        raise ToolError(f'{where} is not a call: expected {{"name": ..., "arguments": {{...}}}}')
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ToolError(f"{where} has no function 'name'")
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            raise ToolError(f"{where} arguments are not valid JSON ({err.msg})") from None
    if not isinstance(arguments, Mapping):
        raise ToolError(f"{where} arguments must be a JSON object")
    return ToolCall(name, dict(arguments))


def calls_json(calls: Sequence[ToolCall]) -> str:
    """The canonical content of a ``function`` message."""
    return json.dumps([call.as_dict() for call in calls], ensure_ascii=False)


def calls_of(content: str) -> list[ToolCall]:
    """The calls of a ``function`` message (its content as `read_calls` accepts it, not
    checked against tools: the data reader did that)."""
    return read_calls(content, None, check_names=False)


# ---------------------------------------------------------------------------- formats


@dataclass(frozen=True)
class ToolFormat:
    """How one model family writes tools and calls, and how its output is read back.

    ``hermes``: calls as ``<tool_call>{"name": ..., "arguments": ...}</tool_call>`` blocks,
    tool schemas listed in ``<tools>`` (Qwen 2/2.5/3, Hermes, SmolLM3 and most ChatML models);
    the documented default for a chat template with no tool syntax of its own.
    ``json``: a call is the reply's JSON object ``{"name": ..., "parameters": ...}`` (Llama 3.1).
    """

    name: str
    call_marker: str
    system_intro: str
    system_outro: str
    lead: str = ""  # what the family may write before a call (Llama 3.1's <|python_tag|>)

    def render_calls(self, calls: Sequence[ToolCall]) -> str:
        if self.name == "json":
            return "\n".join(
                json.dumps({"name": c.name, "parameters": dict(c.arguments)}, ensure_ascii=False)
                for c in calls
            )
        return "\n".join(
            f"<tool_call>\n{json.dumps(c.as_dict(), ensure_ascii=False)}\n</tool_call>"
            for c in calls
        )

    def system_text(self, tools: Sequence[Mapping[str, Any]]) -> str:
        """The tool list in the system prompt, for a template that does not render tools."""
        listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in openai_tools(tools))
        return f"{self.system_intro}\n{listed}\n{self.system_outro}"

    def call_prefix(self, name: str | None = None) -> str:
        """Text that starts a call (a named one with `name`): written after the generation
        prompt to make the model call (``tool_choice: required`` or a named function). It ends
        where the tokenizer's pre-tokenisation splits anyway (before `` {``), so the prompt's
        tokens are those training saw."""
        if self.name == "json":
            return '{"name":' + (" " + json.dumps(name) + ', "parameters":' if name else "")
        head = "<tool_call>\n"
        return head + ('{"name": ' + json.dumps(name) + ', "arguments":' if name else "")

    def parse(self, text: str, tools: Sequence[Mapping[str, Any]] | None = None) -> ParsedReply:
        """The reply's text and calls. Whitespace around the JSON is tolerated, the JSON
        itself is not repaired: a call that does not parse gives `error` and no calls."""
        return _parse_json(text, self.lead) if self.name == "json" else _parse_hermes(text)


_HERMES_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def _parse_hermes(text: str) -> ParsedReply:
    if "<tool_call>" not in text:
        return ParsedReply(text.strip())
    content = text[: text.index("<tool_call>")].strip()
    calls: list[ToolCall] = []
    for k, block in enumerate(_HERMES_BLOCK.findall(text[text.index("<tool_call>") :])):
        try:
            calls.append(_call(json.loads(block), f"call {k + 1}"))
        except json.JSONDecodeError as err:
            return ParsedReply(content, (), f"call {k + 1} is not valid JSON ({err.msg})")
        except ToolError as err:
            return ParsedReply(content, (), str(err))
    return ParsedReply(content, tuple(calls))


def _parse_json(text: str, lead: str) -> ParsedReply:
    body = text.strip().removeprefix(lead).strip()
    if not body.startswith("{"):
        return ParsedReply(text.strip())
    calls: list[ToolCall] = []
    decoder = json.JSONDecoder()
    at = 0
    while at < len(body):
        try:
            item, end = decoder.raw_decode(body, at)
        except json.JSONDecodeError as err:
            return ParsedReply("", (), f"call {len(calls) + 1} is not valid JSON ({err.msg})")
        try:
            calls.append(_call(item, f"call {len(calls) + 1}"))
        except ToolError as err:
            return ParsedReply("", (), str(err))
        at = end
        while at < len(body) and body[at] in " \t\r\n;":
            at += 1
    return ParsedReply("", tuple(calls))


HERMES = ToolFormat(
    "hermes",
    "<tool_call>",
    "You can call functions to help with the user's request. Their JSON schemas are listed "
    "between <tools> and </tools>:\n<tools>",
    "</tools>\nTo call a function, reply only with one block per call:\n<tool_call>\n"
    '{"name": "<function name>", "arguments": {<arguments as JSON>}}\n</tool_call>',
)
JSON_CALLS = ToolFormat(
    "json",
    "{",
    "You can call functions to help with the user's request. Their JSON schemas:",
    'To call a function, reply only with JSON: {"name": "<function name>", '
    '"parameters": {<arguments as JSON>}}',
    "<|python_tag|>",
)
TOOL_FORMATS: Mapping[str, ToolFormat] = MappingProxyType({"hermes": HERMES, "json": JSON_CALLS})


# ---------------------------------------------------------------------------- checking calls


def schema_problems(call: ToolCall, tools: Sequence[Mapping[str, Any]]) -> list[str]:
    """What makes `call` invalid against its function's JSON schema: unknown function,
    missing required or unexpected arguments, wrong JSON types, values outside an enum."""
    schemas = {tool_name(t): function_schema(t) for t in tools}
    if call.name not in schemas:
        return [f"unknown function '{call.name}'"]
    params = schemas[call.name].get("parameters") or {}
    properties: Mapping[str, Any] = params.get("properties") or {}
    problems = [
        f"missing argument '{key}'"
        for key in params.get("required") or ()
        if key not in call.arguments
    ]
    for key, value in call.arguments.items():
        if key not in properties:
            if params.get("additionalProperties") is not True:
                problems.append(f"unexpected argument '{key}'")
            continue
        problems += [f"'{key}': {p}" for p in _value_problems(value, properties[key])]
    return problems


_JSON_TYPES: Mapping[str, tuple[type, ...]] = MappingProxyType(
    {
        "string": (str,),
        "number": (int, float),
        "integer": (int,),
        "boolean": (bool,),
        "array": (list,),
        "object": (dict,),
        "null": (type(None),),
    }
)


def _value_problems(value: Any, schema: Mapping[str, Any]) -> list[str]:
    kind = schema.get("type")
    kinds = [kind] if isinstance(kind, str) else list(kind or ())
    if kinds:
        ok = any(
            isinstance(value, _JSON_TYPES.get(k, (object,)))
            and not (k in ("number", "integer") and isinstance(value, bool))
            for k in kinds
        )
        if not ok:
            return [f"expected {' or '.join(kinds)}, got {json.dumps(value, ensure_ascii=False)}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{json.dumps(value, ensure_ascii=False)} is not one of {schema['enum']}"]
    return []
