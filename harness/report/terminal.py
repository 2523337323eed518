"""The tables a run prints on the terminal (rich), from the same rows as the markdown and HTML reports."""

from __future__ import annotations

from typing import Any, Optional

from harness.report.tables import (
    CLAIMS_HEADER,
    MODEL_HEADER,
    claim_rows,
    model_rows,
    task_header,
    task_rows,
    top_notes,
)
from harness.results.schema import RunSummary
from harness.verdicts.claims import Verdict
from harness.verdicts.decision import (
    DECISION_HEADER,
    TaskDecision,
    decision_rows,
    decision_title,
)


def rich_table(title: str, header: list[str], rows: list[list[str]], fold: bool = True) -> Any:
    """A terminal table of report rows (markup escaped: a model or task name is printed as it is)."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(h, overflow="fold" if fold else "ellipsis")  # ellipsis: rich's default
    for row in rows:
        table.add_row(*map(escape, row))
    return table


def print_tables(
    summary: RunSummary,
    console: Any,
    verdicts: list[Verdict] | None = None,
    decision: dict[str, TaskDecision] | None = None,
    large: bool = False,
    keep: Optional[int] = None,
) -> None:
    """The decision, the claims, the models and the comparison; with many models (``large``) the leaderboards stay
    in the report, and the terminal gets the decision, the claims and the cells' counts."""
    for note in top_notes(summary):
        console.print(f"[bold yellow]warning:[/] {note}", highlight=False)
    if decision:
        console.print(rich_table(decision_title(decision), DECISION_HEADER, decision_rows(decision)))
    if verdicts:
        console.print(
            rich_table(
                "claims of the seed articles (details in report.md / claims.json)",
                CLAIMS_HEADER,
                claim_rows(verdicts, keep),
            )
        )
    title = (
        "small vs large (ratios < 1 favour the small model)"
        if len(summary.order) == 2
        else f"every model against {summary.reference} (ratios < 1 favour the model)"
    )
    if large:
        console.print(
            f"{len(summary.order)} models x {len(summary.tasks)} tasks, each against {summary.reference}: "
            "a leaderboard per task in report.md / report.html"
        )
    else:
        console.print(rich_table(f"{summary.name}: models", MODEL_HEADER, model_rows(summary), fold=False))
        console.print(rich_table(f"{summary.task_group}: {title}", task_header(summary), task_rows(summary)))
    counts: dict[str, int] = {}
    for c in summary.cells:
        counts[c["status"] if c.get("complete") else "missing"] = (
            counts.get(c["status"] if c.get("complete") else "missing", 0) + 1
        )
    missing = summary.missing_cells if not large or len(summary.missing_cells) <= 10 else []
    console.print(
        "cells: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + (f" -- missing: {', '.join(missing)} (rerun the same command to compute them)" if missing else "")
        + (" -- harness cells DIR --missing lists the cells not yet reportable" if large else "")
    )
