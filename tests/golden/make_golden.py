"""Regenerate the golden report fixtures (run this only when a report is meant to change, and review the diff).

    python tests/golden/make_golden.py            # re-render the expected outputs from the stored cells
    python tests/golden/make_golden.py --rerun    # run the tiny models again: new cells, new expected outputs

Two runs on tiny random-weight models over the default tasks (8 items each): the default pair and the
three-model comparison. Their cells, config and environment are kept as inputs; every report file
rebuilt from them is kept as the expected output (text in full, binary as sha256). Paths are stored
with the run directory replaced by ``@RUN@``.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUNS = {"default": ["pair=tiny"], "three": ["comparison=tiny_three"]}
INPUTS = ("config.json", "environment.json", "cells.json", "plan.json")


def rerender() -> None:
    """The expected outputs of the stored inputs, rendered by this version of the code."""
    from golden_check import render_all

    for name in RUNS:
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            shutil.copytree(HERE / name / "input", run)
            for path in run.rglob("*.json"):
                path.write_text(path.read_text().replace("@RUN@", str(run)))
            expected = render_all(run)
            (HERE / name / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
            print(f"{name}: {len(expected)} outputs re-rendered")


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from golden_check import render_all

    if "--rerun" not in sys.argv:
        rerender()
        return
    for name, overrides in RUNS.items():
        with tempfile.TemporaryDirectory() as tmp:
            run = Path(tmp) / "run"
            subprocess.run([sys.executable, "-m", "harness", *overrides, "runtime.max_samples=8", "runtime.progress=false",
                            f"hydra.run.dir={run}", f"paths.store_dir={run}/cells"], check=True, cwd=ROOT,
                           stdout=subprocess.DEVNULL)
            dest = HERE / name
            shutil.rmtree(dest, ignore_errors=True)
            (dest / "input").mkdir(parents=True)
            for f in INPUTS:
                (dest / "input" / f).write_text((run / f).read_text().replace(str(run), "@RUN@"))
            for cell in (run / "cells").rglob("*"):
                if cell.is_file() and cell.suffix != ".lock":
                    target = dest / "input" / cell.relative_to(run)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_text(cell.read_text().replace(str(run), "@RUN@"))
            expected = render_all(run)
            (dest / "expected.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
            print(f"{name}: {len(expected)} outputs")


if __name__ == "__main__":
    main()
