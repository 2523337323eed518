"""What every sub-command shares: the one-line error style, run directories among overrides, the console."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from rich.console import Console

from harness.config.schema import CONFIG_DIR
from harness.errors import EXIT_USAGE

EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C
OVERRIDES_HELP = (
    "run directories, sweep directories or cell stores, and KEY=VALUE overrides for this report only "
    "(e.g. claims.C3.thresholds.accuracy_tolerance=0.03 hardware.hourly_usd=2.5)"
)


def fail(message: str) -> NoReturn:
    print(f"error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def make_console() -> Console:
    """stdout console; when piped (CI, files) wide enough for the comparison table."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=240)


def quiet_libraries() -> None:
    """Our own progress bar and log lines replace the libraries' per-step noise."""
    import logging

    logging.getLogger("absl").setLevel(logging.WARNING)  # rouge-score logs every tokenizer choice
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:
        pass


class Parser(argparse.ArgumentParser):
    """argparse with this harness's error style: one ``error: ... -- fix: ...`` line, exit code 2."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} -- fix: see {self.prog} --help")


def split_paths(paths: Sequence[str], usage: str) -> tuple[list[Path], list[str]]:
    """Run directories and the ``key=value`` overrides mixed among them, checked."""
    overrides = [a for a in paths if "=" in a and not Path(a).exists()]
    runs = [Path(a) for a in paths if a not in overrides]
    if not runs:
        fail(f"{usage} needs a run directory -- fix: {usage} results/<date>/<run>")
    for run_dir in runs:
        if not run_dir.is_dir():
            fail(f"run directory {run_dir} does not exist -- fix: pass a directory under results/")
    return runs, overrides


def interrupted() -> NoReturn:
    print(
        "interrupted: every record written so far is kept in its cell -- fix: run the same command again to resume "
        "(complete cells are reused, the interrupted one continues after its last record)",
        file=sys.stderr,
    )
    sys.exit(EXIT_INTERRUPTED)
