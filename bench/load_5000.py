"""Load benchmark: the tiny pair on 5,000 generated items per task, with bounded memory.

    python bench/load_5000.py [--items 5000] [--bound-gib 1.0] [--out /tmp/load5000]

Runs the real command line (classification + summarization, both models), then checks from the
files on disk that every cell's records.jsonl has exactly N lines, and that each cell's peak RSS
(recorded in its manifest, the kernel's high-water mark reset per task) stays under the bound:
records are streamed to disk as they are produced, never held for a whole task. Prints the wall
time, the peak RSS per cell and the line counts. Not a unit test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def make_tasks(root: Path, n: int) -> Path:
    tasks = root / "tasks"
    tasks.mkdir(parents=True, exist_ok=True)
    with open(tasks / "load_cls.jsonl", "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "id": f"c{i:05d}",
                        "text": f"Ticket {i}: the invoice {i * 7} was charged twice.",
                        "label": "high" if i % 3 else "low",
                    }
                )
                + "\n"
            )
    with open(tasks / "load_gen.jsonl", "w") as fh:
        for i in range(n):
            fh.write(
                json.dumps(
                    {
                        "id": f"g{i:05d}",
                        "text": f"Report {i}: revenue rose {i % 50} percent in region {i % 7}.",
                        "reference": f"Revenue rose {i % 50} percent.",
                    }
                )
                + "\n"
            )
    (tasks / "load_cls.yaml").write_text(
        "name: load_cls\ntype: classification\ndata: load_cls.jsonl\nprompt: '{text}\\nPriority:'\n"
        "labels: {low: low, high: high}\n"
    )
    (tasks / "load_gen.yaml").write_text(
        "name: load_gen\ntype: summarization\ndata: load_gen.jsonl\nprompt: 'Summarize: {text}\\nSummary:'\n"
        "max_new_tokens: 8\n"
    )
    return tasks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=5000)
    ap.add_argument(
        "--bound-gib", type=float, default=1.0, help="peak RSS allowed per cell (the tiny pair needs about 0.6 GiB)"
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/load5000"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tasks = make_tasks(args.out, args.items)
    run_dir, store = args.out / "run", args.out / "cells"
    cmd = [
        sys.executable,
        "-m",
        "harness",
        "pair=tiny",
        "task.name=load",
        "task.tasks=[load_cls,load_gen]",
        f"paths.task_dirs=[{tasks}]",
        f"paths.store_dir={store}",
        "runtime.max_samples=null",
        "runtime.batch_size=8",
        "runtime.dtype=float32",
        "print_report=false",
        f"hydra.run.dir={run_dir}",
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, text=True, capture_output=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"the run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    ok = True
    print(f"{args.items} items x 2 tasks x 2 models: wall {wall:.1f} s (report included)")
    for cell in json.loads((run_dir / "cells.json").read_text())["cells"]:
        path = Path(cell["path"])
        lines = sum(1 for _ in open(path / "records.jsonl", "rb"))
        manifest = json.loads((path / "manifest.json").read_text())
        peak = max(s["memory"]["peak_rss_bytes"] for s in manifest["sessions"]) / 2**30
        cell_ok = lines == args.items and peak < args.bound_gib and manifest["status"] == "complete"
        ok &= cell_ok
        print(
            f"  {cell['model']:>10} / {cell['task']:<9} {lines} lines, peak RSS {peak:.2f} GiB, "
            f"{sum(s['wall_s'] for s in manifest['sessions']):.1f} s timed: {'ok' if cell_ok else 'FAILED'}"
        )
    print(
        f"bound: {args.bound_gib} GiB peak RSS per cell, exactly {args.items} lines per cell: {'PASS' if ok else 'FAIL'}"
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
