"""harness study: each claim decided on each folder of a run's tasks, side by side (docs/claims-study.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.common import OVERRIDES_HELP, fail, split_paths


def study(args: argparse.Namespace) -> None:
    from harness.report.study import write_study

    runs, overrides = split_paths(args.paths, "harness study")
    if len(runs) != 1:
        fail("harness study takes one run directory -- fix: harness study RUN_DIR [--out FILE] [KEY=VALUE ...]")
    out = args.out or runs[0] / "study.md"
    command = " ".join(["harness study", str(runs[0]), *(["--out", str(args.out)] if args.out else []), *overrides])
    print(f"study: {write_study(runs[0], out, overrides, command)}")


def add(sub: Any) -> None:
    p = sub.add_parser(
        "study",
        help="each claim decided on each group of a run's tasks (seed vs real), side by side, as one markdown file",
        description="The claims study (docs/claims-study.md): the run's tasks grouped by the folder their file lives "
        "in (tasks/seed, tasks/real, yours), every claim decided on each group alone by the report's checks, with "
        "the command, the machine, the time and every task's n. No model is loaded.",
    )
    p.add_argument("paths", nargs="+", metavar="RUN_DIR_OR_KEY=VALUE", help=OVERRIDES_HELP)
    p.add_argument("--out", type=Path, metavar="FILE", help="where to write it (default: RUN_DIR/study.md)")
    p.set_defaults(func=study)
