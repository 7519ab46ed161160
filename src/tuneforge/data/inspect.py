"""``tuneforge data inspect``: what the configured datasets hold, before a run trains on them.

Every row is read leniently (`samples`), so the report can say how many rows are empty or
unusable; it then counts duplicates, token lengths against cutoff_len, the language and
script mix and, for labelled data, the label balance (`inspect_report` prints it).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from tuneforge.config.schema import RunConfig
from tuneforge.data.duplicates import find_duplicates
from tuneforge.data.inspect_report import DatasetFacts, InspectReport
from tuneforge.data.languages import language_mix, script_mix
from tuneforge.data.lengths import Lengths, TokenLengths, token_lengths
from tuneforge.data.samples import read_samples
from tuneforge.data.templates import get_template


def inspect_datasets(
    cfg: RunConfig, tokenizer: Any | None, *, limit: int | None = None
) -> InspectReport:
    """Read, check and measure the configured training datasets with the run's tokenizer
    (without one, everything but the token lengths); with `limit`, each one's first rows."""
    samples = read_samples(cfg, limit)
    stage = cfg.finetune.stage
    template = (
        get_template(cfg.data.template, tokenizer, cfg.data.default_system, cfg.data.tool_format)
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
