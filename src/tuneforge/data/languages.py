"""The language and script mix of samples: what share of the data is in which language.

A run meant for one language that is fed another mostly (or a mix it was not meant for) is
visible here before training.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from tuneforge.data.samples import Sample

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
# Text given to the language identifier per sample: enough for a reliable guess, and fast.
LANGUAGE_SAMPLE_CHARS = 2000


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
