"""User-facing errors: one line that names the field, file or line, and what is allowed.

Anything that is not a `UserError` reaching the command line is a bug in tuneforge and is
printed with its traceback and a request for a report.
"""

from __future__ import annotations

from dataclasses import dataclass

# The exit code of a run stopped by Ctrl-C (or the WebUI's Stop): 128 + SIGINT, as shells do.
INTERRUPTED_EXIT = 130


class UserError(Exception):
    """A problem with what the user gave us (config, data, path, request); never a bug."""

    exit_code = 1

    def __init__(self, *lines: str) -> None:
        self.lines = [line for line in lines if line]
        super().__init__("\n".join(self.lines))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: the key it is about (None: no one key), so a form can
    show it under that field, and the message, which names the key itself for the CLI."""

    key: str | None
    message: str


class ConfigError(UserError):
    """One or more invalid configuration keys or values, all reported together.

    `problems` keep the key of each; `lines` are what the CLI prints: each message after
    `origin` (the config file, or "config"), when there is one.
    """

    exit_code = 2

    def __init__(self, *problems: Problem | str, origin: str | None = None) -> None:
        self.problems = tuple(
            problem if isinstance(problem, Problem) else Problem(None, problem)
            for problem in problems
        )
        prefix = f"{origin}: " if origin else ""
        super().__init__(*(prefix + problem.message for problem in self.problems))


class DataError(UserError):
    """A dataset, data file or row that cannot be used as it is."""

    exit_code = 3


class ModelError(UserError):
    """A model or adapter that cannot be found or loaded."""

    exit_code = 4


class OutputError(UserError):
    """An output directory or checkpoint that would be overwritten or is unusable."""

    exit_code = 5
