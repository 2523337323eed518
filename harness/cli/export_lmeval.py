"""harness export-lmeval: lm-eval task YAMLs for harness tasks, so lm-eval runs them too."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def export_lmeval(args: argparse.Namespace) -> None:
    from harness.config.resources import tasks_dir as shipped_tasks_dir
    from harness.tasks.export_lmeval import export_tasks
    from harness.tasks.local import available_tasks, find_task, load_task

    tasks_dir = shipped_tasks_dir()
    names = list(args.tasks) or sorted(n for n in available_tasks(tasks_dir) if n.startswith("seed_"))
    paths = export_tasks([load_task(find_task(n, tasks_dir)) for n in names], args.out_dir)
    print(f"wrote {len(paths)} lm-eval task(s) to {args.out_dir}: {', '.join(p.stem for p in paths)}")
    print(
        f"run them with: lm_eval --model hf --model_args pretrained=<model> --include_path {args.out_dir} --tasks {','.join(p.stem for p in paths)}"
    )


def add(sub: Any) -> None:
    p = sub.add_parser("export-lmeval", help="write lm-eval task YAMLs for harness tasks, so lm-eval runs them too")
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("tasks", nargs="*", metavar="TASK", help="task names (default: every seed_* task)")
    p.set_defaults(func=export_lmeval)
