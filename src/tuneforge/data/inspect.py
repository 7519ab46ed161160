"""``tuneforge data inspect``: what the configured datasets hold, before a run trains on them.

Rows are read through the same registry, file readers and format converters as training,
but a row that training would refuse is kept and counted instead of stopping the read, so the
report can say how many rows are empty or unusable. Lengths are tokens of the configured model
rendered through the configured template, exactly what ``cutoff_len`` is compared with.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from tuneforge.config.schema import RunConfig
from tuneforge.data import files, formats, labelled, registry
from tuneforge.data.formats import Message, RowConverter
from tuneforge.data.templates import Template, get_template
from tuneforge.errors import ConfigError

# Columns a row may leave empty without being broken (alpaca's input, a missing system...).
OPTIONAL_COLUMNS = ("query", "system", "history", "tools")
# Scripts told apart in the language/script mix; letters of any other script count as "other".
SCRIPTS = (
    "Latin",
    "Han",
    "Hiragana",
    "Katakana",
    "Hangul",
    "Cyrillic",
    "Arabic",
    "Hebrew",
    "Greek",
    "Devanagari",
    "Thai",
)
# Scripts written without spaces between words: each character is counted as a word.
CHARACTER_SCRIPTS = ("Han", "Hiragana", "Katakana")
# cutoff_len suggestions are rounded up to a multiple of this.
CUTOFF_STEP = 64
# Text given to the language identifier per sample: enough for a reliable guess, and fast.
LANGUAGE_SAMPLE_CHARS = 2000
HISTOGRAM_BINS = 12
HISTOGRAM_WIDTH = 40


@dataclass(frozen=True)
class Sample:
    """One row as read: its conversation (sft), text (pt, cls) and label, or why it is unusable."""

    dataset: str
    where: str
    row: int
    messages: tuple[Message, ...] = ()
    tools: str | None = None
    text: str | None = None
    label: str | None = None
    problem: str | None = None
    empty_fields: tuple[str, ...] = ()

    @property
    def location(self) -> str:
        return f"{self.where}: row {self.row}"

    def contents(self) -> str:
        """All the sample's text, for language detection and exact comparison."""
        if self.text is not None:
            return self.text
        return "\n".join(message["content"] for message in self.messages)


def read_samples(cfg: RunConfig) -> list[Sample]:
    """Every row of the configured training datasets, usable or not, in file order."""
    data = cfg.data
    if not data.dataset:
        raise ConfigError(
            f"dataset: not set; name one or more datasets registered in "
            f"{data.dataset_dir}/{registry.INFO_FILE}"
        )
    samples: list[Sample] = []
    for spec in registry.resolve(list(dict.fromkeys(data.dataset)), data.dataset_dir):
        for where, rows in files.iter_files(spec, cfg.model.cache_dir):
            samples.extend(_read_rows(spec, where, rows, cfg.finetune.stage))
    return samples


def _read_rows(spec: registry.DatasetSpec, where: str, rows: Any, stage: str) -> Iterator[Sample]:
    if not len(rows):
        return
    if stage == "cls":
        text_column = spec.columns.get("prompt", labelled.TEXT_COLUMN)
        label_column = spec.columns.get("response", labelled.LABEL_COLUMN)
        for index, row in enumerate(tqdm(rows, desc=f"Reading {where}", leave=False)):
            text, label = row.get(text_column), labelled.label_name(row.get(label_column))
            problem = (
                f"empty text in '{text_column}'"
                if not isinstance(text, str) or not text.strip()
                else None
                if label is not None
                else f"'{label_column}' is {row.get(label_column)!r}, not a label"
            )
            yield Sample(
                spec.name,
                where,
                index + 1,
                text=text if isinstance(text, str) else "",
                label=label,
                problem=problem,
                empty_fields=_empty_fields(row, ()),
            )
        return
    fmt = formats.resolve_format(spec, where, rows, stage)
    convert = RowConverter(fmt, where)
    optional = [fmt.columns[key] for key in OPTIONAL_COLUMNS if key in fmt.columns]
    has_label = labelled.LABEL_COLUMN in rows.column_names
    for index, row in enumerate(tqdm(rows, desc=f"Reading {where}", leave=False)):
        converted = convert(row, index)
        problem = converted["error"]
        label = labelled.label_name(row.get(labelled.LABEL_COLUMN)) if has_label else None
        yield Sample(
            spec.name,
            where,
            index + 1,
            messages=tuple(converted.get("messages") or ()),
            tools=converted.get("tools"),
            text=converted.get("text"),
            label=label,
            problem=problem.removeprefix(f"{where}: row {index + 1}: ") if problem else None,
            empty_fields=_empty_fields(row, optional),
        )


def _empty_fields(row: dict[str, Any], optional: Sequence[str]) -> tuple[str, ...]:
    """Paths of the row's empty or whitespace-only strings, e.g. ``output``,
    ``conversations[].value``; columns that may be empty are left out."""
    found: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            if not value.strip():
                found.append(path)
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for item in value:
                walk(item, f"{path}[]")

    for column, value in row.items():
        if column not in optional:
            walk(value, column)
    return tuple(dict.fromkeys(found))


def normalize(text: str) -> str:
    """Case, whitespace and punctuation removed: what makes two samples the same one."""
    return " ".join(re.sub(r"[\W_]+", " ", text.casefold()).split())


def sample_key(sample: Sample, *, normalized: bool) -> str:
    """The identity of a sample for deduplication: its roles, contents, tools and label."""
    fix = normalize if normalized else (lambda text: text)
    if sample.text is not None:
        body: Any = fix(sample.text)
    else:
        body = [[message["role"], fix(message["content"])] for message in sample.messages]
    return json.dumps([body, sample.tools, sample.label], ensure_ascii=False)


@dataclass(frozen=True)
class Duplicates:
    """Samples equal to an earlier one: exactly, and after `normalize`."""

    exact: int
    normalized: int
    example: tuple[str, str] | None


def find_duplicates(samples: Sequence[Sample]) -> dict[str, Duplicates]:
    """Per dataset, the samples that repeat an earlier usable sample (of any dataset)."""
    seen: dict[bool, dict[str, Sample]] = {False: {}, True: {}}
    counts: dict[str, Counter[bool]] = {}
    examples: dict[str, tuple[str, str]] = {}
    for sample in samples:
        counts.setdefault(sample.dataset, Counter())
        if sample.problem:
            continue
        for normalized in (False, True):
            key = sample_key(sample, normalized=normalized)
            first = seen[normalized].setdefault(key, sample)
            if first is not sample:
                counts[sample.dataset][normalized] += 1
                examples.setdefault(sample.dataset, (first.location, sample.location))
    return {
        name: Duplicates(count[False], count[True], examples.get(name))
        for name, count in counts.items()
    }


@dataclass(frozen=True)
class Lengths:
    """Token counts of one part of the samples: min, percentiles and max."""

    values: tuple[int, ...]

    def percentile(self, share: float) -> int:
        if not self.values:
            return 0
        return int(np.percentile(np.asarray(self.values), share, method="higher"))

    def row(self) -> list[int]:
        return [
            min(self.values, default=0),
            *(self.percentile(p) for p in (50, 90, 95, 99)),
            max(self.values, default=0),
        ]


@dataclass(frozen=True)
class TokenLengths:
    prompt: Lengths
    response: Lengths | None
    total: Lengths


def token_lengths(
    samples: Iterable[Sample], template: Template | None, tokenizer: Any, *, add_eos: bool = False
) -> TokenLengths:
    """Prompt / response / total tokens per usable sample, as training would encode them
    (`add_eos`: pt ends every document with the end-of-sequence token)."""
    prompt: list[int] = []
    response: list[int] = []
    eos = int(add_eos and tokenizer.eos_token_id is not None)
    usable = [sample for sample in samples if not sample.problem]
    for sample in tqdm(usable, desc="Counting tokens", leave=False):
        if template is None:
            prompt.append(len(tokenizer(sample.text or "")["input_ids"]) + eos)
            continue
        tools = json.loads(sample.tools) if sample.tools else None
        segments = template.encode_segments(list(sample.messages), tools=tools)
        answer = sum(len(segment.ids) for segment in segments if segment.assistant)
        prompt.append(sum(len(segment.ids) for segment in segments) - answer)
        response.append(answer)
    totals = (
        [p + r for p, r in zip(prompt, response, strict=True)] if template is not None else prompt
    )
    return TokenLengths(
        Lengths(tuple(prompt)),
        Lengths(tuple(response)) if template is not None else None,
        Lengths(tuple(totals)),
    )


def suggest_cutoff_len(lengths: Lengths) -> int:
    """The 95th percentile of sample lengths, rounded up to a multiple of CUTOFF_STEP."""
    return max(CUTOFF_STEP, CUTOFF_STEP * math.ceil(lengths.percentile(95) / CUTOFF_STEP))


def script_mix(samples: Iterable[Sample]) -> Counter[str]:
    """Samples by the script most of their words are in ("mixed" when a second script has a
    quarter or more). A Han, Hiragana or Katakana character counts as a word of its own."""
    import regex

    patterns = {
        name: regex.compile(
            rf"\p{{Script={name}}}" if name in CHARACTER_SCRIPTS else rf"\p{{Script={name}}}+"
        )
        for name in SCRIPTS
    }
    mix: Counter[str] = Counter()
    for sample in samples:
        text = sample.contents()
        counts = sorted(
            ((len(pattern.findall(text)), name) for name, pattern in patterns.items()), reverse=True
        )
        total = sum(count for count, _ in counts)
        if not total:
            mix["other"] += 1
        elif counts[1][0] >= total / 4:
            mix["mixed"] += 1
        else:
            mix[counts[0][1]] += 1
    return mix


def language_mix(samples: Iterable[Sample]) -> Counter[str]:
    """Samples by the language py3langid identifies in (the start of) their text."""
    import py3langid

    return Counter(
        py3langid.classify(sample.contents()[:LANGUAGE_SAMPLE_CHARS])[0] for sample in samples
    )


@dataclass(frozen=True)
class DatasetFacts:
    """What inspect found in one dataset."""

    name: str
    samples: int
    unusable: int
    first_problem: str | None
    empty_fields: Counter[str]
    duplicates: Duplicates
    labels: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class InspectReport:
    """Everything ``tuneforge data inspect`` prints; `text` renders it."""

    stage: str
    cutoff_len: int
    template: str
    datasets: tuple[DatasetFacts, ...]
    lengths: TokenLengths
    languages: Counter[str]
    scripts: Counter[str]

    @property
    def samples(self) -> int:
        return sum(facts.samples - facts.unusable for facts in self.datasets)

    @property
    def truncated(self) -> int:
        return sum(1 for length in self.lengths.total.values if length > self.cutoff_len)

    @property
    def suggested_cutoff_len(self) -> int | None:
        """For sft and cls: the p95 suggestion; pt splits long documents, it never cuts them."""
        if self.stage == "pt" or not self.lengths.total.values:
            return None
        return suggest_cutoff_len(self.lengths.total)

    def text(self) -> str:
        """The report as printed: per dataset, then token lengths with a histogram."""
        lines = []
        for facts in self.datasets:
            lines += _dataset_lines(facts)
        lines.append(
            f"Mix of {self.samples:,} usable samples: languages "
            f"{_shares(self.languages)}; scripts {_shares(self.scripts)}"
        )
        if self.lengths.total.values:
            lines += _length_lines(self)
        return "\n".join(lines)


def inspect_datasets(cfg: RunConfig, tokenizer: Any | None) -> InspectReport:
    """Read, check and measure the configured training datasets with the run's tokenizer
    (without one, everything but the token lengths)."""
    samples = read_samples(cfg)
    stage = cfg.finetune.stage
    template = (
        get_template(cfg.data.template, tokenizer, cfg.data.default_system)
        if stage == "sft" and tokenizer is not None
        else None
    )
    duplicates = find_duplicates(samples)
    usable = [sample for sample in samples if not sample.problem]
    facts = []
    for name in dict.fromkeys(sample.dataset for sample in samples):
        own = [sample for sample in samples if sample.dataset == name]
        broken = [sample for sample in own if sample.problem]
        facts.append(
            DatasetFacts(
                name=name,
                samples=len(own),
                unusable=len(broken),
                first_problem=broken[0].location + ": " + str(broken[0].problem)
                if broken
                else None,
                empty_fields=Counter(path for sample in own for path in sample.empty_fields),
                duplicates=duplicates[name],
                labels=Counter(
                    sample.label
                    for sample in own
                    if sample.label is not None and not sample.problem
                ),
            )
        )
    if tokenizer is None:
        lengths, described = TokenLengths(Lengths(()), None, Lengths(())), "no tokenizer"
    else:
        lengths = token_lengths(usable, template, tokenizer, add_eos=stage == "pt")
        described = template.label if template is not None else "plain text"
    return InspectReport(
        stage=stage,
        cutoff_len=cfg.data.cutoff_len,
        template=described,
        datasets=tuple(facts),
        lengths=lengths,
        languages=language_mix(usable),
        scripts=script_mix(usable),
    )


def _dataset_lines(facts: DatasetFacts) -> list[str]:
    lines = [f"dataset '{facts.name}': {facts.samples:,} samples"]
    if facts.empty_fields:
        fields = ", ".join(
            f"{path} in {count:,}" for path, count in facts.empty_fields.most_common()
        )
        lines.append(f"  empty or whitespace-only fields: {fields} rows")
    if facts.unusable:
        lines.append(f"  unusable rows: {facts.unusable:,} (first: {facts.first_problem})")
    dup = facts.duplicates
    if dup.normalized:
        example = f"; e.g. {dup.example[1]} repeats {dup.example[0]}" if dup.example else ""
        lines.append(
            f"  duplicates: {dup.exact:,} exact, {dup.normalized:,} ignoring case, "
            f"spaces and punctuation{example}"
        )
    else:
        lines.append("  duplicates: none")
    if facts.labels:
        most, least = facts.labels.most_common()[0][1], facts.labels.most_common()[-1][1]
        ratio = f" (largest/smallest class: {most / least:.1f}x)" if len(facts.labels) > 1 else ""
        lines.append(f"  labels: {_shares(facts.labels, counts=True)}{ratio}")
    return lines


def _length_lines(report: InspectReport) -> list[str]:
    lengths = report.lengths
    lines = [
        f"Tokens per sample ({report.template}):",
        f"  {'':<9}" + "".join(f"{name:>8}" for name in ("min", "p50", "p90", "p95", "p99", "max")),
    ]
    parts = [("prompt", lengths.prompt), ("response", lengths.response), ("total", lengths.total)]
    if lengths.response is None:
        parts = [("total", lengths.total)]
    for name, part in parts:
        if part is not None:
            lines.append(f"  {name:<9}" + "".join(f"{value:>8,}" for value in part.row()))
    lines += render_histogram(lengths.total.values, mark=report.cutoff_len)
    count = len(lengths.total.values)
    share = f" ({100 * report.truncated / count:.1f}%)" if count else ""
    verb = "splits" if report.stage == "pt" else "truncates"
    lines.append(
        f"cutoff_len={report.cutoff_len} {verb} {report.truncated:,} of {count:,} samples{share}"
    )
    suggested = report.suggested_cutoff_len
    if suggested is not None:
        lines.append(
            f"suggested cutoff_len: {suggested} (p95 = "
            f"{lengths.total.percentile(95):,} tokens, rounded up to a multiple of "
            f"{CUTOFF_STEP})"
        )
    return lines


def render_histogram(
    values: Sequence[int],
    *,
    mark: int | None = None,
    bins: int = HISTOGRAM_BINS,
    width: int = HISTOGRAM_WIDTH,
) -> list[str]:
    """Text bars of how many values fall in each equal-width range; `mark` flags its range."""
    if not values:
        return []
    low_end, high_end = min(values), max(values)
    counts, edges = np.histogram(
        np.asarray(values), bins=bins, range=(low_end, max(high_end, low_end + bins))
    )
    peak = max(int(counts.max()), 1)
    lines = []
    for count, low, high in zip(counts, edges[:-1], edges[1:], strict=True):
        bar = "█" * math.ceil(width * int(count) / peak) if count else ""
        flag = "  <- cutoff_len" if mark is not None and low <= mark < high else ""
        lines.append(f"  {int(low):>7,}-{int(high):<7,} {bar:<{width}} {int(count):,}{flag}")
    return lines


def _shares(counter: Counter[str], *, counts: bool = False) -> str:
    total = sum(counter.values()) or 1
    return ", ".join(
        f"{name} {count:,} ({100 * count / total:.0f}%)"
        if counts
        else f"{name} {100 * count / total:.0f}%"
        for name, count in counter.most_common()
    )
