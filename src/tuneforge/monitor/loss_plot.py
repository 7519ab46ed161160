"""``plot_loss: true``: a PNG of training and validation loss, for people who paste plots into
chats; the training monitor writes it when a run ends."""

from __future__ import annotations

from pathlib import Path

from tuneforge.monitor.plots import Curve, Panel, render


def plot_loss(log_history: list[dict], path: Path) -> Path | None:
    """Draw loss (and eval_loss when present) against the step; None when nothing was logged."""
    train = [(e["step"], e["loss"]) for e in log_history if "loss" in e and "step" in e]
    val = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    if not train:
        return None
    render(
        Panel(
            path.stem,
            "Training and validation loss",
            "loss",
            [Curve("training loss", train), Curve("validation loss", val, dashed=True)],
        ),
        path.parent,
    )
    return path
