"""Command line: ``harness --help`` lists the sub-commands, ``harness COMMAND --help`` explains one.

With no sub-command the arguments are Hydra overrides and an experiment runs (``-m`` for a sweep; ``run.py``).
One module per sub-command: it adds its parser (``add``) and runs it; each imports its stage when it runs, so
``harness --help`` starts without torch.

Bad input (unknown names, malformed task files, impossible settings) ends with
one ``error: ...`` line and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Optional

from harness.cli import cells, claims, export_lmeval, flips, followup, judge, regress, report, study
from harness.cli.common import Parser, fail, options
from harness.cli.run import RUN_HELP, explain_hydra_error, run_experiment_command
from harness.errors import HarnessError

__all__ = ["COMMANDS", "build_parser", "explain_hydra_error", "main"]

SUB_COMMANDS = (report, claims, study, judge, followup, regress, flips, cells, export_lmeval)


def build_parser() -> argparse.ArgumentParser:
    """The sub-commands; anything else on the command line is a Hydra run."""
    groups = ", ".join(f"{g} ({'|'.join(options(g))})" for g in ("pair", "comparison", "task", "runtime", "hardware"))
    parser = Parser(
        prog="harness",
        description="Small-vs-large LLM evaluation harness: quality, latency, memory and cost of "
        "models compared on your tasks.",
        epilog=RUN_HELP.format(groups=groups),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", title="commands (no command: run an experiment)", parser_class=Parser)
    for module in SUB_COMMANDS:
        module.add(sub)
    return parser


COMMANDS = (
    "report",
    "claims",
    "study",
    "judge",
    "followup",
    "plan",
    "merge",
    "regress",
    "flips",
    "cells",
    "export-lmeval",
)


def main(argv: Optional[Sequence[str]] = None) -> None:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    args = sys.argv[1:]
    if not (args and (args[0] in COMMANDS or args[0] in ("-h", "--help"))):
        run_experiment_command()
        return
    parser = build_parser()
    # directories and KEY=VALUE overrides may follow the options too (harness regress RUN --baseline F key=v)
    parsed, rest = parser.parse_known_args(args)
    if parsed.command is None:
        return
    flags = [a for a in rest if a.startswith("-")]
    if flags or (rest and not hasattr(parsed, "paths")):
        parser.error(f"unrecognized arguments: {' '.join(flags or rest)}")
    if rest:
        parsed.paths = [*parsed.paths, *rest]
    try:
        parsed.func(parsed)
    except HarnessError as exc:
        fail(str(exc))
