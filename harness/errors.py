"""User-facing errors: one line that names the problem and the fix, exit code 2.

Anything raised as ``HarnessError`` is a problem with the user's input (a name,
a file, a setting), not a bug: the CLI prints ``error: <message>`` and exits 2
without a traceback. Other exceptions are bugs and keep their traceback.
"""

from __future__ import annotations

EXIT_USAGE = 2


class HarnessError(Exception):
    """Bad input: an unknown name, a malformed file, an impossible setting."""

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = " ".join(self.problem.split())
        if self.fix:
            text += f" -- fix: {' '.join(self.fix.split())}"
        return text


class ConfigError(HarnessError):
    """A setting that cannot work (bad value, unknown name, missing hardware)."""


class TaskFileError(HarnessError):
    """A task definition or data file that is missing or malformed."""


class ModelSourceError(HarnessError):
    """A model that cannot be fetched or verified (missing file, bad checksum)."""


class ServerError(HarnessError):
    """A served model's server failed a request for good (retries spent, a refused request): the records written so far
    stay, and the same command resumes after them."""
