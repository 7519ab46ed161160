"""Plain-text tables for the terminal: two models side by side, the samples where they differ
most, and a confusion matrix."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tuneforge.eval.generate import EvalSample

SHOWN_CHARS = 100
CORNER = "true \\ predicted"


def side_by_side(
    left_name: str,
    left: Mapping[str, float],
    right_name: str,
    right: Mapping[str, float],
    keys: Sequence[str] | None = None,
) -> str:
    """``metric | left | right | delta`` for every key both sides have (delta = right - left)."""
    keys = [k for k in (keys or left) if k in left and k in right]
    width = max([len("metric"), *map(len, keys)])
    columns = max(len(left_name), len(right_name), 8)
    lines = [f"{'metric':<{width}}  {left_name:>{columns}}  {right_name:>{columns}}  {'delta':>8}"]
    for key in keys:
        delta = right[key] - left[key]
        lines.append(
            f"{key:<{width}}  {left[key]:>{columns}.4f}  {right[key]:>{columns}.4f}  {delta:>+8.4f}"
        )
    return "\n".join(lines)


def columns_table(columns: Mapping[str, Mapping[str, float]], keys: Sequence[str]) -> str:
    """``metric | a | b | c`` for several models on the same keys (each column has them all)."""
    width = max([len("metric"), *map(len, keys)])
    size = max([8, *map(len, columns)])
    lines = [f"{'metric':<{width}}" + "".join(f"  {name:>{size}}" for name in columns)]
    for key in keys:
        lines.append(
            f"{key:<{width}}"
            + "".join(f"  {values[key]:>{size}.4f}" for values in columns.values())
        )
    return "\n".join(lines)


def most_different(
    samples: Sequence[EvalSample],
    base: Sequence[str],
    tuned: Sequence[str],
    base_scores: Sequence[float],
    tuned_scores: Sequence[float],
    count: int = 3,
) -> str:
    """The `count` samples whose ROUGE-L moved most between base and tuned, either way."""
    order = sorted(range(len(samples)), key=lambda i: -abs(tuned_scores[i] - base_scores[i]))
    blocks = []
    for i in order[:count]:
        delta = tuned_scores[i] - base_scores[i]
        blocks.append(
            "\n".join(
                [
                    f"[{i}] ROUGE-L {base_scores[i]:.2f} -> {tuned_scores[i]:.2f} ({delta:+.2f})",
                    f"  prompt   : {shorten(samples[i].question)}",
                    f"  reference: {shorten(samples[i].reference or '')}",
                    f"  base     : {shorten(base[i])}",
                    f"  tuned    : {shorten(tuned[i])}",
                ]
            )
        )
    return "\n".join(blocks)


def confusion_table(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> str:
    """Rows: true label, columns: predicted label."""
    width = max(len(CORNER), *map(len, names))
    cells = max(6, *map(len, names))
    lines = [f"{CORNER:<{width}}  " + "  ".join(f"{n:>{cells}}" for n in names)]
    for name, row in zip(names, matrix, strict=True):
        lines.append(f"{name:<{width}}  " + "  ".join(f"{v:>{cells}}" for v in row))
    return "\n".join(lines)


def shorten(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` on one line, cut to `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
