"""harness followup (plan, its former name): the items a follow-up run needs to decide each comparison."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import make_console, split_paths


def followup(args: argparse.Namespace) -> None:
    from harness.report.markdown import md_table
    from harness.report.terminal import rich_table
    from harness.verdicts.followup import PLAN_HEADER, plan_note, plan_rows

    runs, _ = split_paths(args.paths, f"harness {args.command}")
    console = make_console()
    for run_dir in runs:
        rows = plan_rows(run_dir)
        if not console.is_terminal:
            print(f"## Follow-up run for {run_dir}\n\n{md_table(PLAN_HEADER, rows)}\n\n{plan_note()}")
            continue
        console.print(rich_table(f"follow-up run for {run_dir}", PLAN_HEADER, rows))
        console.print(plan_note())


def add(sub: Any) -> None:
    for name in ("followup", "plan"):
        p = sub.add_parser(
            name,
            help="how many items a follow-up run needs to decide each comparison, and how long it would take"
            if name == "followup"
            else "the former name of followup",
            description="Sample sizes that would decide each "
            "undecided comparison of a run, from its own paired differences, and the expected wall time.",
        )
        p.add_argument("paths", nargs="+", metavar="RUN_DIR")
        p.set_defaults(func=followup)
