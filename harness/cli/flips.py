"""harness flips: the items where two models (or one model in two runs) differ, as a table for a pull request."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.common import fail


def flips(args: argparse.Namespace) -> None:
    import json

    from harness.analysis.flips import compare_records, default_models, flips_markdown
    from harness.results.summary import cell_records, summarize_with_outcomes

    usage = "harness flips RUN [RUN_B] [--models A,B] [--task T] [--format md|json]"
    runs = [Path(r) for r in args.runs]
    for run in runs:
        if not (run / "plan.json").is_file():
            fail(f"{run} is not a run directory (no plan.json) -- fix: {usage}")
    if len(runs) > 2:
        fail(f"harness flips compares one run's models or two runs, got {len(runs)} runs -- fix: {usage}")
    loaded = [summarize_with_outcomes(run) for run in runs]
    names = [a for a in (args.models or "").split(",") if a]
    first, second = loaded[0], loaded[-1]
    names = names or default_models(first[0].order, first[0].reference, second[0].order if len(runs) == 2 else None)
    if len(runs) == 1:
        if len(names) != 2:
            fail(f"name two models of {runs[0]} -- fix: --models A,B with A, B among {', '.join(first[0].order)}")
    else:
        if len(names) == 1:
            names = names * 2
        if len(names) != 2:
            fail("name the model of each run -- fix: --models A (the same in both) or --models A,B")
    for (summary, _), name, run in zip((first, second), names, (runs[0], runs[-1])):
        if name not in summary.models:
            fail(f"model {name!r} is not in {run} -- fix: use one of {', '.join(summary.order)}")
    tasks = [t for t in first[0].tasks if t in second[0].tasks]
    if args.task:
        if args.task not in tasks:
            fail(f"task {args.task!r} is not in both -- fix: --task one of {', '.join(tasks) or '(none in common)'}")
        tasks = [args.task]
    per_task = {}
    for task in tasks:
        # only the two cells compared are read again, for their text (predictions, gold)
        a, b = cell_records(first[0], task, names[0]), cell_records(second[0], task, names[1])
        if a and b:
            per_task[task] = compare_records(first[0].tasks[task].type, a, b)
    label_a = names[0] if len(runs) == 1 else f"{names[0]} in {runs[0]}"
    label_b = names[1] if len(runs) == 1 else f"{names[1]} in {runs[1]}"
    if args.format == "json":
        out = {
            "a": label_a,
            "b": label_b,
            "tasks": {t: {"counts": dict(c), "flips": [f.to_dict() for f in fl]} for t, (c, fl) in per_task.items()},
        }
        print(json.dumps(out, indent=2, ensure_ascii=False, default=str))
    else:
        print(flips_markdown(label_a, label_b, per_task, limit=args.limit))


def add(sub: Any) -> None:
    p = sub.add_parser(
        "flips",
        help="the items where two models (or one model in two runs) differ, as a table for a pull request",
        description="Per task: the outcome counts of two models over the same items (McNemar's discordant pairs "
        "for classification) and every item on which they differ. One run: two of its models (default: the "
        "first candidate against the reference). Two runs: a model in each (default: the first model they share).",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="one run directory, or two to compare across runs")
    p.add_argument("--models", metavar="A,B", help="the two models (two runs: A for both, or A,B)")
    p.add_argument("--task", metavar="TASK", help="one task only")
    p.add_argument("--format", choices=("md", "json"), default="md", help="markdown tables (default) or JSON")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="items listed per task in markdown (default 50)")
    p.set_defaults(func=flips)
