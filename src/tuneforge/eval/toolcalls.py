"""`tuneforge eval` on function-call data: does the model call the right function, rightly?

A held-out row's first model turn is either a call (a ``function`` message) or a plain answer.
Each model answers the prompt before it greedily, with the row's tools rendered as in
training, and its reply is read back into calls by the template's own `ToolFormat`, the
parser serving uses. A reply is then judged step by step: did it decide to call (or not) as
expected; were the function names right, in order; were the arguments exactly the expected
JSON; were they at least valid against the function's schema (a wrong city is still a valid
call, a missing required argument is not). Replies that tried to call but wrote a call that
does not parse are counted apart: that is a format problem, not a wrong decision.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneforge.data.tools import ParsedReply, ToolCall, calls_of, schema_problems
from tuneforge.errors import DataError
from tuneforge.eval.generate import EvalSample, answer_with_each
from tuneforge.eval.report import shorten, side_by_side
from tuneforge.infer.chat import generation_settings
from tuneforge.infer.resolve import ResolvedModel

logger = logging.getLogger(__name__)

ROWS_NAME = "tool_call_rows.jsonl"
MOST_WRONG = 5
SHOWN_CHARS = 160

# Metric keys, each a share in [0, 1]; "call rows" are the rows whose expected turn is a call.
METRICS: Mapping[str, str] = {
    "tool_decision_accuracy": "all rows: called when a call was expected, answered when not",
    "tool_name_accuracy": "call rows: the function name(s) called, in order",
    "tool_arguments_exact": "call rows: names and arguments equal to the expected JSON",
    "tool_schema_valid": "call rows: called, every call valid against its function's schema",
    "tool_overall_accuracy": "all rows: call rows exactly right, the others answered",
    "tool_invalid_call_rate": "all rows: tried to call, but the call did not parse",
}


@dataclass(frozen=True)
class ToolSample:
    """A prompt (with its tools) and the turn expected after it: calls, or a plain answer."""

    sample: EvalSample
    expected: tuple[ToolCall, ...]

    @property
    def expects_call(self) -> bool:
        return bool(self.expected)


@dataclass(frozen=True)
class Verdict:
    """How one reply fares on each measure, and what was wrong, worst first."""

    decision: bool
    name: bool
    arguments: bool
    schema_valid: bool
    invalid: bool
    problems: tuple[str, ...]

    @property
    def severity(self) -> int:
        """3 wrong decision or unreadable call, 2 wrong function, 1 wrong arguments, 0 right."""
        if not self.decision or self.invalid:
            return 3
        return 0 if self.arguments else 1 if self.name else 2


def carries_tools(rows: Any) -> bool:
    """Whether test rows (``messages``, ``tools`` columns) are function-call data."""
    return "tools" in rows.column_names and any(rows["tools"])


def tool_samples(rows: Any) -> list[ToolSample]:
    """Each row's conversation up to its first model turn (a call or an answer), and that
    turn; rows with no model turn have nothing to score and are left out."""
    samples = []
    for messages, tools in zip(rows["messages"], rows["tools"], strict=True):
        turn = next((i for i, m in enumerate(messages) if m["role"] in MODEL_ROLES), None)
        if turn is None:
            continue
        expected = messages[turn]
        calls = tuple(calls_of(expected["content"])) if expected["role"] == "function" else ()
        reference = calls_text(calls) if calls else expected["content"]
        schemas = json.loads(tools) if tools else None
        samples.append(ToolSample(EvalSample(list(messages[:turn]), reference, schemas), calls))
    return samples


MODEL_ROLES = ("assistant", "function")


def judge(sample: ToolSample, reply: ParsedReply) -> Verdict:
    """Score one parsed reply against the expected turn."""
    tried = bool(reply.calls) or reply.error is not None
    problems: list[str] = []
    if reply.error is not None:
        problems.append(f"unreadable call: {reply.error}")
    if tried and not sample.expects_call:
        if reply.calls:
            problems.append(f"called {_names(reply.calls)} where an answer was expected")
        return Verdict(False, False, False, False, reply.error is not None, tuple(problems))
    if not sample.expects_call:
        return Verdict(True, True, True, True, False, ())
    if not tried:
        problems.append("answered instead of calling")
        return Verdict(False, False, False, False, False, tuple(problems))
    got = [c.name for c in reply.calls]
    wanted = [c.name for c in sample.expected]
    name = got == wanted
    if reply.calls and not name:
        problems.append(f"called {_names(reply.calls)}, expected {_names(sample.expected)}")
    arguments = name and all(
        same_json(dict(a.arguments), dict(b.arguments))
        for a, b in zip(reply.calls, sample.expected, strict=True)
    )
    if name and not arguments:
        problems += [
            f"{a.name}: {difference}"
            for a, b in zip(reply.calls, sample.expected, strict=True)
            for difference in argument_differences(a.arguments, b.arguments)
        ]
    invalid = [
        f"{call.name}: {problem}"
        for call in reply.calls
        for problem in schema_problems(call, sample.sample.tools or ())
    ]
    problems += [f"schema: {p}" for p in invalid if "unknown function" not in p]
    return Verdict(
        True,
        name,
        arguments,
        bool(reply.calls) and not invalid,
        reply.error is not None,
        tuple(problems),
    )


def same_json(a: Any, b: Any) -> bool:
    """Equality as JSON values: 2 == 2.0, but true is not 1 and "2" is not 2."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def argument_differences(got: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """One line per argument that differs: missing, unexpected, or another value."""
    lines = [f"missing '{key}'" for key in expected if key not in got]
    lines += [f"unexpected '{key}'" for key in got if key not in expected]
    lines += [
        f"'{key}' is {_json(got[key])}, expected {_json(expected[key])}"
        for key in expected
        if key in got and not same_json(got[key], expected[key])
    ]
    return lines


def tool_call_metrics(
    samples: Sequence[ToolSample], verdicts: Sequence[Verdict]
) -> dict[str, float]:
    """The `METRICS` over all rows or over the call rows, as each key says."""
    rows = list(zip(samples, verdicts, strict=True))
    calls = [v for s, v in rows if s.expects_call]

    def share(values: Sequence[bool]) -> float:
        return sum(values) / len(values) if values else 0.0

    return {
        "tool_decision_accuracy": share([v.decision for v in verdicts]),
        "tool_name_accuracy": share([v.name for v in calls]),
        "tool_arguments_exact": share([v.arguments for v in calls]),
        "tool_schema_valid": share([v.schema_valid for v in calls]),
        "tool_overall_accuracy": share(
            [v.arguments if s.expects_call else v.decision for s, v in rows]
        ),
        "tool_invalid_call_rate": share([v.invalid for v in verdicts]),
    }


def evaluate_tool_calls(
    tuned: ResolvedModel, base: ResolvedModel | None, rows: Any, out: Path
) -> tuple[dict[str, Any], str, list[Path]]:
    """Both models answer every held-out prompt; the metrics, a printable report (base vs
    tuned, the most wrong rows) and the files written."""
    cfg = tuned.config
    samples = tool_samples(rows)
    if not samples:
        raise DataError(
            "the test data has tools but no row with an answer or a call to compare with"
        )
    gen = generation_settings(cfg.generation, temperature=0)  # accuracy of the likeliest reply
    batch = cfg.train.per_device_eval_batch_size
    logger.info("Answering %d prompts with tools, batch %d, greedy", len(samples), batch)
    answered = answer_with_each(tuned, base, [s.sample for s in samples], gen, batch, out)
    verdicts = {
        label: [judge(s, r) for s, r in zip(samples, replies, strict=True)]
        for label, replies in answered.replies.items()
    }
    own = "tuned" if base else "model"
    metrics = {label: tool_call_metrics(samples, v) for label, v in verdicts.items()}
    records = row_records(samples, answered.texts, verdicts)
    wrong = most_wrong(records, verdicts, own)
    call_rows = sum(s.expects_call for s in samples)
    result: dict[str, Any] = {
        "samples": len(samples),
        "call_samples": call_rows,
        "tool_format": answered.tool_format,
        "generation": gen.to_kwargs(),
        **metrics,
        "invalid_calls": {label: sum(x.invalid for x in v) for label, v in verdicts.items()},
        "wrong_tool_calls": wrong,
    }
    rows_file = out / ROWS_NAME
    rows_file.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8"
    )
    header = (
        f"{len(samples)} held-out rows with tools: {call_rows} expect a call, "
        f"{len(samples) - call_rows} an answer; calls read in {answered.tool_format} format"
    )
    if base is None:
        table = "\n".join(f"{k:<24} {v:.4f}" for k, v in metrics["model"].items())
    else:
        table = side_by_side("base", metrics["base"], "tuned", metrics["tuned"])
    invalid = ", ".join(f"{label} {n}" for label, n in result["invalid_calls"].items())
    parts = [header, table, f"replies that tried to call but did not parse: {invalid}"]
    parts.append(wrong_text(wrong, own) if wrong else f"Every row right ({own}).")
    return result, "\n\n".join(parts), [*answered.files, rows_file]


def row_records(
    samples: Sequence[ToolSample],
    texts: Mapping[str, Sequence[str]],
    verdicts: Mapping[str, Sequence[Verdict]],
) -> list[dict[str, Any]]:
    """Per row: prompt, expected turn, and each model's reply with what was wrong in it."""
    records = []
    for i, sample in enumerate(samples):
        record: dict[str, Any] = {
            "index": i,
            "prompt": sample.sample.question,
            "expected": sample.sample.reference,
        }
        for label in verdicts:
            record[label] = texts[label][i]
            record[f"{label}_problems"] = list(verdicts[label][i].problems)
        records.append(record)
    return records


def most_wrong(
    records: Sequence[dict[str, Any]],
    verdicts: Mapping[str, Sequence[Verdict]],
    own: str,
    count: int = MOST_WRONG,
) -> list[dict[str, Any]]:
    """The `count` rows the evaluated model got most wrong (wrong decision first, then wrong
    function, then wrong arguments; among equals, rows the base got right first)."""
    mine = verdicts[own]
    base = verdicts.get("base")
    wrong = [i for i, v in enumerate(mine) if v.severity]
    wrong.sort(key=lambda i: (-mine[i].severity, base[i].severity if base else 0, i))
    return [records[i] for i in wrong[:count]]


def wrong_text(rows: Sequence[Mapping[str, Any]], own: str) -> str:
    labels = [own, *(["base"] if "base" in rows[0] else [])]
    blocks = []
    for row in rows:
        lines = [f"[{row['index']}] {'; '.join(row[f'{own}_problems'])}"]
        lines.append(f"  prompt  : {_shown(row['prompt'])}")
        lines.append(f"  expected: {_shown(row['expected'])}")
        for label in labels:
            lines.append(f"  {label:<8}: {_shown(row[label])}")
        blocks.append("\n".join(lines))
    return f"Most wrong rows ({own}):\n" + "\n".join(blocks)


def calls_text(calls: Sequence[ToolCall]) -> str:
    """Calls as a reader writes them: ``get_weather({"city": "Oslo"})``, one per line."""
    return "\n".join(f"{c.name}({c.arguments_json()})" for c in calls)


def _names(calls: Sequence[ToolCall]) -> str:
    return ", ".join(c.name for c in calls)


def _shown(text: str) -> str:
    return shorten(text, SHOWN_CHARS)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
