"""A project folder with a config that would train, and `Project.rejects` to spoil one thing.

Every bad-input case runs the real command line (`tuneforge.cli.main`) and expects what a
user should see: one ``tuneforge: error:`` line naming the key, file or row, the documented
exit code, no traceback, no error logged besides, and not one file of the project touched
(no output folder either).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tuneforge.cli import main

ROWS = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}."} for i in range(6)]
ERROR_PREFIX = "tuneforge: error: "


def snapshot(folder: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under `folder` with (is a folder, size, mtime in ns)."""
    return {
        str(path.relative_to(folder)): (path.is_dir(), path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


@dataclass
class Project:
    """``run.yaml`` and ``data/`` (``dataset_info.json`` registering ``demo``) in a folder
    that is the current directory, so messages name relative paths."""

    root: Path
    capsys: pytest.CaptureFixture[str]
    caplog: pytest.LogCaptureFixture
    model_dir: Path | None = None

    def config(self, **keys: Any) -> dict[str, Any]:
        """The flat config of ``run.yaml``: a short LoRA run on ``demo``, updated by `keys`
        (a key set to `...` is left out)."""
        base = {
            "model_name_or_path": str(self.model_dir or "smollm2-135m-instruct"),
            "dataset": "demo",
            "dataset_dir": "data",
            "template": "chatml",
            "output_dir": "saves/run",
            "max_steps": 1,
            "report_to": "none",
            "cutoff_len": 64,
        }
        return {key: value for key, value in {**base, **keys}.items() if value is not ...}

    def write_config(self, **keys: Any) -> Path:
        return self.write("run.yaml", yaml.safe_dump(self.config(**keys), sort_keys=False))

    def write(self, name: str, content: str | bytes | list[dict[str, Any]] | dict) -> Path:
        """Write text or bytes as given; rows as JSON lines (``.jsonl``) or JSON."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        elif name.endswith(".jsonl"):
            path.write_text("".join(json.dumps(row) + "\n" for row in content))
        else:
            path.write_text(json.dumps(content, indent=2))
        return path

    def register(self, entry: dict[str, Any] | None = None, name: str = "demo") -> Path:
        """``data/dataset_info.json`` with one entry (default: ``demo.jsonl``, detected)."""
        return self.write(
            "data/dataset_info.json",
            {name: entry if entry is not None else {"file_name": "demo.jsonl"}},
        )

    def rejects(self, argv: list[str], exit_code: int, *names: str) -> str:
        """Run the CLI; assert one error line naming every one of `names`, `exit_code`, no
        traceback, nothing logged at ERROR and no file changed. Returns the line (without
        the ``tuneforge: error:`` prefix) for checks of its wording."""
        before = snapshot(self.root)
        self.capsys.readouterr()
        self.caplog.clear()
        with self.caplog.at_level(logging.INFO):
            code = main(argv)
        out, err = self.capsys.readouterr()
        errors = [line for line in err.splitlines() if line.startswith(ERROR_PREFIX)]
        assert "Traceback" not in out + err, err
        assert len(errors) == 1, err
        line = errors[0].removeprefix(ERROR_PREFIX)
        for name in names:
            assert name in line, line
        assert code == exit_code, line
        logged = [
            record.getMessage() for record in self.caplog.records if record.levelno >= logging.ERROR
        ]
        assert not logged, logged
        assert snapshot(self.root) == before, "files changed"
        return line

    def rejects_as_process(self, argv: list[str], exit_code: int, *names: str) -> str:
        """`rejects` for ``python -m tuneforge.cli``: every line the process prints (progress
        bars, library logs, warnings) is checked, and only one may mention an error."""
        before = snapshot(self.root)
        done = subprocess.run(
            [sys.executable, "-m", "tuneforge.cli", *argv],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        output = done.stdout + done.stderr
        errors = [line for line in output.splitlines() if "error" in line.lower()]
        assert "Traceback" not in output, output
        assert len(errors) == 1 and errors[0].startswith(ERROR_PREFIX), output
        line = errors[0].removeprefix(ERROR_PREFIX)
        for name in names:
            assert name in line, line
        assert done.returncode == exit_code, output
        assert snapshot(self.root) == before, "files changed"
        return line


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, caplog) -> Project:
    """A project whose config fails before any model or tokenizer is needed."""
    monkeypatch.chdir(tmp_path)
    made = Project(tmp_path, capsys, caplog)
    made.write_config()
    made.register()
    made.write("data/demo.jsonl", ROWS)
    return made


@pytest.fixture
def model_project(project: Project, tiny_model_dir: Path) -> Project:
    """The same project training the tiny random model, for cases that read the data (the
    tokenizer loads; the weights never do)."""
    project.model_dir = tiny_model_dir
    project.write_config()
    return project
