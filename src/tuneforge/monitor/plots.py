"""Line charts of logged series, as inline SVG for the HTML pages and as PNG files.

One `Panel` is one chart; the report draws one run per panel, the comparison overlays runs on
shared axes. SVG text is drawn as paths, so a page needs no fonts and no network to show it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

Point = tuple[int, float]


@dataclass(frozen=True)
class Curve:
    label: str
    points: Sequence[Point]
    dashed: bool = False
    color: str | None = None


@dataclass(frozen=True)
class Panel:
    """One chart: `name` is its file name (``loss`` -> ``loss.png``)."""

    name: str
    title: str
    ylabel: str
    curves: list[Curve] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not any(curve.points for curve in self.curves)


def run_colors(count: int) -> list[str]:
    """Distinct colours, one per run, the same in every panel of a page."""
    palette = [
        "#1f77b4",
        "#d62728",
        "#2ca02c",
        "#9467bd",
        "#ff7f0e",
        "#17becf",
        "#8c564b",
        "#e377c2",
        "#7f7f7f",
        "#bcbd22",
    ]
    return [palette[i % len(palette)] for i in range(count)]


def depth_colors(count: int) -> list[str]:
    """A colour ramp from the first layer to the last."""
    import matplotlib

    ramp = matplotlib.colormaps["viridis"]
    return [matplotlib.colors.to_hex(ramp(i / max(count - 1, 1))) for i in range(count)]


def render(panel: Panel, png_dir: Path | None = None) -> str:
    """The panel as an SVG element (and ``<png_dir>/<name>.png`` when a folder is given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.fonttype": "path", "font.size": 9}):
        fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=110)
        values: list[float] = []
        for curve in panel.curves:
            if not curve.points:
                continue
            steps, ys = zip(*curve.points, strict=True)
            values += [y for y in ys if math.isfinite(y)]
            ax.plot(
                steps,
                ys,
                label=curve.label,
                color=curve.color,
                linestyle="--" if curve.dashed else "-",
                marker="o" if curve.dashed or len(steps) < 12 else None,
                markersize=3,
            )
        positive = [v for v in values if v > 0]
        if positive and len(positive) == len(values) and max(positive) / min(positive) > 100:
            ax.set_yscale("log")
        ax.set_title(panel.title)
        ax.set_xlabel("step")
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if len(panel.curves) > 1:
            ax.legend(fontsize=7, ncol=2 if len(panel.curves) > 6 else 1)
        fig.tight_layout()
        if png_dir is not None:
            png_dir.mkdir(parents=True, exist_ok=True)
            fig.savefig(png_dir / f"{panel.name}.png")
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg")
        plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]
