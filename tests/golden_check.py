"""Render every report output of a run directory into a comparable form (shared by the golden test and its maker)."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

TEXT = (".md", ".json", ".txt")


def render_all(run: Path) -> dict[str, str]:
    """Rebuild the report of ``run`` and return {file: text or sha256}, paths under ``run`` written as @RUN@."""
    from rich.console import Console

    from harness.report.build import build_report

    console = Console(file=io.StringIO(), width=240, color_system=None, force_terminal=False, record=True)
    build_report(run, console=console)
    out = {"terminal.txt": console.export_text().replace(str(run), "@RUN@")}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run).as_posix()
        if not path.is_file() or rel.startswith(("cells/", ".hydra/")) or rel in ("harness.log", "plan.json"):
            continue
        if rel in ("config.json", "environment.json", "cells.json", "plan.json"):
            continue
        data = path.read_bytes()
        out[rel] = data.decode().replace(str(run), "@RUN@") if path.suffix in TEXT else hashlib.sha256(data).hexdigest()
    return out
