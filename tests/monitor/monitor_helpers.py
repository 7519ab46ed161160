"""Helpers of the monitor tests: tiny runs, their logs, screenshots of pages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tuneforge


def train_run(settings: dict, output_dir: Path, **changes) -> Path:
    return tuneforge.train({**settings, "output_dir": str(output_dir), **changes}).output_dir


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "trainer_log.jsonl").read_text().splitlines()]


# Screenshots land here, for a person (or CI's artifacts) to look at.
OUTPUT_DIR = Path(__file__).resolve().parents[2] / "test-output" / "monitor"


def screenshot(page: Path, name: str, height: int = 3200) -> Path:
    """Open `page` in headless Chromium (no network, fresh profile) and save a PNG of it."""
    import shutil
    import subprocess
    import tempfile

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    out = OUTPUT_DIR / name
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--hide-scrollbars",
                f"--window-size=1400,{height}",
                f"--screenshot={out}",
                page.resolve().as_uri(),
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
    return out


def color_share(png: Path) -> float:
    """Share of strongly coloured pixels: the charts' lines; text and frames are grey."""
    import matplotlib.image

    pixels = matplotlib.image.imread(png)[..., :3]
    return float(((pixels.max(axis=-1) - pixels.min(axis=-1)) > 0.3).mean())
