"""harness report (and merge, its former spelling): a report rebuilt from stored records, no model loaded."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from harness.cli.common import OVERRIDES_HELP, fail, make_console, split_paths


def comparison_dir(runs: list[Path], out: Optional[Path]) -> Path:
    """The directory a report goes to: the run itself, or a new one combining several runs / a sweep / a store."""
    from harness.results.comparison import write_combined

    if len(runs) == 1 and out is None:
        if (runs[0] / "plan.json").is_file():
            return runs[0]  # a run (an older one without cells.json gets read_run's explanation)
        out = runs[0] / "comparison"  # a sweep directory or a store: the combined report lives inside it
    return write_combined(runs, out)


def report(args: argparse.Namespace) -> None:
    from harness.report.build import build_report

    runs, overrides = split_paths(args.paths, f"harness {args.command}")
    build_report(comparison_dir(runs, args.out), console=make_console(), overrides=overrides)


def merge(args: argparse.Namespace) -> None:
    if len(args.runs) < 2:
        fail(
            "harness merge needs an output directory and at least two runs -- fix: harness report RUN_DIR RUN_DIR --out OUT_DIR"
        )
    report(argparse.Namespace(command="merge", paths=args.runs, out=Path(args.out)))


def add(sub: Any) -> None:
    p = sub.add_parser(
        "report",
        help="rebuild summary, statistics, claims and report.md/.html from the records (no model loaded)",
        description="Rebuild a report from stored records. One run directory: its report is rewritten in place. "
        "Several runs, a sweep directory or a cell store: one comparison of all their cells.",
    )
    p.add_argument("paths", nargs="+", metavar="DIR_OR_KEY=VALUE", help=OVERRIDES_HELP)
    p.add_argument(
        "--out", type=Path, help="directory of the combined report (default: the run itself, or DIR/comparison)"
    )
    p.set_defaults(func=report)

    p = sub.add_parser("merge", help="the former spelling of: harness report RUN_DIR ... --out OUT_DIR")
    p.add_argument("out", metavar="OUT_DIR")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR")
    p.set_defaults(func=merge)
