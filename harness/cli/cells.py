"""harness cells: each (model, task) cell of a run, a sweep or a store, and its status."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.common import fail


def cells(args: argparse.Namespace) -> None:
    from harness.results.listing import cells_text, list_cells

    path = Path(args.dir)
    if not path.is_dir():
        fail(
            f"{path} is not a directory -- fix: harness cells DIR with DIR a run directory, a sweep directory or a cell store"
        )
    print(cells_text(list_cells(path), path, only_missing=args.missing))


def add(sub: Any) -> None:
    p = sub.add_parser(
        "cells",
        help="each (model, task) cell of a run, sweep or store and its status: complete, partial, stopped, running, missing",
        description="List the cells of a run directory, a sweep directory or a cell store (what harness report takes), "
        "with their status and records done / planned. --missing: only the cells not reportable yet (running or "
        "missing), e.g. after a cluster sweep. Exit 0 either way.",
    )
    p.add_argument("dir", metavar="DIR", help="a run directory, a sweep directory or a cell store")
    p.add_argument("--missing", action="store_true", help="only the cells that are not reportable (running, missing)")
    p.set_defaults(func=cells)
