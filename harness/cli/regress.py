"""harness regress: a run against a stored baseline, per model and task (exit 0 ok, 1 regression, 2 bad input)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from harness.cli.common import fail


def regress_run(args: argparse.Namespace) -> None:
    from harness.config.schema import regress_config
    from harness.verdicts.regress import ALLOWABLE, load_baseline, markdown, regress, update_baseline

    usage = "harness regress RUN_DIR --baseline results/baselines/<name>.json"
    overrides = [a for a in args.paths if "=" in a]
    runs = [Path(a) for a in args.paths if "=" not in a]
    if len(runs) != 1 or not runs[0].is_dir():
        fail(f"harness regress needs one existing run directory, got {[str(r) for r in runs]} -- fix: {usage}")
    allow = {a for a in (args.allow or "").split(",") if a}
    if allow - set(ALLOWABLE):
        fail(
            f"--allow {','.join(sorted(allow - set(ALLOWABLE)))} is not one of {','.join(ALLOWABLE)} -- fix: --allow items,task"
        )
    cfg = regress_config(overrides)
    if args.update:
        data = update_baseline(runs[0], args.baseline)
        print(
            f"wrote baseline {args.baseline}: {len(data.cells)} cells, measured on "
            f"{', '.join(sorted({c.hardware for c in data.cells.values()}))}"
        )
        return
    baseline = load_baseline(args.baseline)
    report = regress(runs[0], baseline, cfg, allow, strict_hardware=args.strict_hardware)
    if report.other_hardware:
        print(
            f"other hardware: {report.other_hardware} -- latency and memory not compared, quality compared",
            file=sys.stderr,
        )
    text = markdown(report, baseline, runs[0])
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    sys.exit(1 if report.regressed else 0)


def add(sub: Any) -> None:
    p = sub.add_parser(
        "regress",
        help="compare a run with a stored baseline (exit 0 ok, 1 regression, 2 bad input)",
        description="Regression check of a run against a stored baseline, per model and task: quality, latency, memory.",
    )
    p.add_argument(
        "paths",
        nargs="+",
        metavar="RUN_DIR_OR_KEY=VALUE",
        help="one run directory, and KEY=VALUE overrides of configs/regress/default.yaml (e.g. latency_ratio_max=1.5)",
    )
    p.add_argument(
        "--baseline", type=Path, required=True, metavar="FILE", help="the baseline JSON (results/baselines/<name>.json)"
    )
    p.add_argument("--update", action="store_true", help="write the run as the new baseline instead of comparing")
    p.add_argument(
        "--allow",
        default="",
        metavar="KINDS",
        help="comma-separated differences that are not failures: items, task, model, missing",
    )
    p.add_argument(
        "--output", type=Path, metavar="FILE", help="also write the markdown verdict to FILE (e.g. a CI job summary)"
    )
    p.add_argument(
        "--strict-hardware",
        action="store_true",
        help="refuse a run measured on another hardware class than the baseline's (default: compare quality only)",
    )
    p.set_defaults(func=regress_run)
