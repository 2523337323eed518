"""harness claims: the seed articles' claims decided again from existing runs, e.g. with other thresholds."""

from __future__ import annotations

import argparse
from typing import Any

from harness.cli.common import OVERRIDES_HELP, make_console, split_paths


def claims(args: argparse.Namespace) -> None:
    from harness.report.build import build_report
    from harness.report.tables import CLAIMS_HEADER, claim_rows
    from harness.report.terminal import rich_table
    from harness.results.records import read_json
    from harness.results.schema import check_format
    from harness.verdicts.claims import CLAIMS_FORMAT, Verdict

    runs, overrides = split_paths(args.paths, "harness claims")
    console = make_console()
    for run_dir in runs:
        build_report(run_dir, console=None, overrides=overrides)
        claims = read_json(run_dir / "claims.json")
        check_format(claims, CLAIMS_FORMAT, f"{run_dir / 'claims.json'}")
        verdicts = [Verdict.from_dict(v) for v in claims["verdicts"]]
        console.print(rich_table(f"claims: {run_dir}", CLAIMS_HEADER, claim_rows(verdicts)))
        for v in verdicts:
            console.print(f"{v.id} ({v.verdict}): {v.sentence}")


def add(sub: Any) -> None:
    p = sub.add_parser(
        "claims",
        help="the verdicts on the seed articles' claims again, e.g. with other thresholds",
        description="Recompute the claims' verdicts of existing runs (no model loaded); config.json is never rewritten.",
    )
    p.add_argument("paths", nargs="+", metavar="DIR_OR_KEY=VALUE", help=OVERRIDES_HELP)
    p.set_defaults(func=claims)
